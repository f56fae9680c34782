"""Contrastive embeddings (seed 004, section 2): the VGG encoder, the task trained with the
sampled triplet loss alone, and the hand-over of its weights to the linear and
end-to-end classifiers. (The sampling and the loss: tests/losses/test_sampled_triplet.py.)"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from lab.data import DigitsDataModule
from lab.data.fakes.cifar10 import write_cifar10
from lab.errors import LabError
from lab.losses import SampledTripletLoss
from lab.models import VGG, SmallCNN
from lab.models.freeze import apply_trainable_policy
from lab.tasks import Classifier
from tests.conftest import REPO
from tests.helpers import quiet_trainer

# -- the VGG encoder --------------------------------------------------------------------


def test_vgg16_bn_encoder_shapes_and_size():
    x = torch.randn(2, 3, 32, 32)
    encoder = VGG(depth=16, embedding_dim=64).eval()
    assert encoder.forward_features(x).shape == (2, 64)
    assert encoder(x).shape == (2, 64)  # no classifier: the features
    # The source's encoder summary: 16,328,832 parameters, of which 1,605,696 in its
    # 25,088 -> 64 layer (a 7x7 pooling of the 1x1 map: the 512 values 49 times); here
    # the same stages and 512 -> 64.
    stages = sum(p.numel() for p in encoder.features.parameters())
    assert stages == 16_328_832 - 1_605_696
    assert sum(p.numel() for p in encoder.parameters()) == stages + 512 * 64 + 64
    classifier = VGG(depth=11, num_classes=10, embedding_dim=32, head_hidden=[16]).eval()
    assert classifier(x).shape == (2, 10) and classifier.num_features == 32
    grey = VGG(depth=11, in_channels=1, batch_norm=False).eval()
    assert grey.forward_features(torch.randn(2, 1, 32, 32)).shape == (2, 512)
    with pytest.raises(LabError, match="depth must be one of"):
        VGG(depth=17)


def test_vgg_imagenet_weights_load_from_the_cache_into_the_stages(monkeypatch):
    # torchvision's vgg11_bn names, random values (building the real model takes seconds).
    stages = VGG(depth=11).features.state_dict()
    state = {f"features.{k}": torch.randn_like(v.float()) for k, v in stages.items()}
    state["classifier.0.weight"] = torch.zeros(4096, 25088)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda *a, **k: state)
    model = VGG(depth=11, in_channels=1, weights="IMAGENET1K_V1", num_classes=10)
    torch.testing.assert_close(
        model.features[0].weight, state["features.0.weight"].sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(model.features[4].weight, state["features.4.weight"])
    with pytest.raises(LabError, match="not a torchvision vgg11_bn weight"):
        VGG(depth=11, weights="IMAGENET1K_V2")


def test_classifier_policy_freezes_the_embedding_and_head_does_not():
    model = VGG(depth=11, embedding_dim=8, num_classes=10, head_hidden=[4])
    apply_trainable_policy(model, "classifier")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("fc.")
    }
    apply_trainable_policy(model, "head")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {
        "embedding",
        "fc",
    }


def test_a_contrastive_checkpoint_loads_into_the_linear_and_the_end_to_end_classifiers(
    tmp_path,
):
    torch.manual_seed(0)
    encoder = Classifier(VGG(depth=11, embedding_dim=8), 3, losses=[SampledTripletLoss()])
    x, y = torch.randn(12, 3, 32, 32), torch.arange(12) % 3
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(encoder, DataLoader(TensorDataset(x, y), batch_size=12))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)  # a real Lightning checkpoint (hyperparameters too)
    encoder.eval()
    with torch.no_grad():
        embedded = encoder.features(x)

    linear = Classifier(
        VGG(depth=11, embedding_dim=8, weights=str(ckpt)), num_classes=3, trainable="classifier"
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(linear.features(x), embedded)  # embedding layer too
    assert linear.backbone.fc.out_features == 3  # a new classifier
    trainable = {n for n, p in linear.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.fc.weight", "backbone.fc.bias"}

    end_to_end = Classifier(
        VGG(depth=11, embedding_dim=8, head_hidden=[16], weights=str(ckpt)), num_classes=3
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(end_to_end.features(x), embedded)
    assert all(p.requires_grad for p in end_to_end.parameters())

    with pytest.raises(LabError, match="first: embedding"):  # another z_dim
        VGG(depth=11, embedding_dim=4, weights=str(ckpt))
    with pytest.raises(LabError, match="does not fit"):  # another depth
        VGG(depth=13, embedding_dim=8, weights=str(ckpt))


# -- the task ---------------------------------------------------------------------------


def test_training_without_pk_batches_lowers_the_loss_and_logs_its_terms(tmp_path):
    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=256)  # plain shuffled batches, no P x K
    data.setup("fit")
    model = Classifier(
        SmallCNN(in_channels=1, batch_norm=True),
        num_classes=10,
        losses=[SampledTripletLoss(margin=1.0)],
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    x, y = next(iter(DataLoader(data.val_set, batch_size=256)))

    def fixed_loss() -> float:  # the same triplets before and after
        model.eval()
        with torch.no_grad():
            features = model.features(x)
            loss = float(model.losses[0](features, y, torch.Generator().manual_seed(0)))
        model.train()
        return loss

    before = fixed_loss()
    trainer = quiet_trainer(max_epochs=3, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    after = fixed_loss()
    assert after < 0.7 * before, (before, after)
    logged = trainer.callback_metrics
    assert 0.0 < float(logged["train/active_triplets"]) <= 1.0
    assert float(logged["train/triplet_anchors"]) == 1.0
    assert float(logged["val/precision_at_1"]) > 0.8  # the embedding groups the classes
    # Nearest class centre (of the epoch's training embeddings), ten classes: 0.1 by chance.
    assert float(logged["val/acc"]) > 0.5
    # Validation triplets are seeded by batch: the same model gives the same val/loss.
    first = trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    second = trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    assert first == second
    assert model.predict == "nearest_centre" and model.head_classes(10) == 0  # no head


def test_the_make_sequence_on_the_fixture_hands_the_encoder_over(lab, workdir):
    # contrastive, then contrastive-linear and contrastive-nn from its last.ckpt, as the
    # Makefile runs them (VGG-11 to keep it short; the hand-over is the same).
    write_cifar10(workdir / "data", per_class_train=5)
    common = [
        "--data.init_args.root",
        str(workdir / "data"),
        "--data.init_args.verify=false",
        "--data.init_args.num_workers=0",
        "--model.init_args.backbone.init_args.depth=11",
        "--trainer.max_steps=1",
    ]
    lab("fit", "--config", REPO / "experiments" / "contrastive.yaml", *common)
    ckpt = workdir / "lightning_logs" / "contrastive" / "version_0" / "checkpoints" / "last.ckpt"
    encoder = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name in ("contrastive-linear", "contrastive-nn"):
        weights = f"--model.init_args.backbone.init_args.weights={ckpt}"
        lab("fit", "--config", REPO / "experiments" / f"{name}.yaml", *common, weights)
        run = workdir / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt"
        state = torch.load(run, map_location="cpu", weights_only=False)["state_dict"]
        embedding, stem = "backbone.embedding.weight", "backbone.features.0.weight"
        if name == "contrastive-linear":  # frozen: exactly the contrastive run's
            assert torch.equal(state[embedding], encoder[embedding])
            assert torch.equal(state[stem], encoder[stem])
        else:  # trained from there: one Adam step (lr 1e-4) away
            assert not torch.equal(state[embedding], encoder[embedding])
            assert (state[embedding] - encoder[embedding]).abs().max() < 1e-3
