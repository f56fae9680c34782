"""Contrastive embeddings (seed 004, section 2): in-batch random triplets, the sampled
triplet margin loss, the VGG encoder and the hand-over of its weights to the linear and
end-to-end classifiers."""

from __future__ import annotations

from collections import Counter

import lightning as L
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lab.data import DigitsDataModule
from lab.data.fakes.cifar10 import write_cifar10
from lab.errors import LabError
from lab.losses import SampledTripletLoss, sample_triplets
from lab.models import VGG, SmallCNN
from lab.models.freeze import apply_trainable_policy
from lab.tasks import Classifier, ContrastiveEmbedder
from tests.conftest import REPO


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


# -- sampling ---------------------------------------------------------------------------

# Singletons (no positive), a one-class batch (no negative), an empty batch, sizes up to
# the source's 2048.
LABELS = [
    torch.tensor([3, 3, 1, 7, 7, 7, 0, 3]),
    torch.tensor([5, 5, 5, 5]),
    torch.tensor([0, 1, 2]),
    torch.tensor([], dtype=torch.long),
    torch.randint(0, 10, (2048,), generator=torch.Generator().manual_seed(1)),
    torch.randint(0, 40, (97,), generator=torch.Generator().manual_seed(2)),
]


@pytest.mark.parametrize("labels", LABELS, ids=lambda t: f"B{len(t)}")
def test_triplets_are_valid_and_cover_exactly_the_anchors_that_have_both(labels):
    anchors, positives, negatives = sample_triplets(labels, torch.Generator().manual_seed(0))
    assert len(anchors) == len(positives) == len(negatives)
    assert torch.equal(labels[positives], labels[anchors])  # same class
    assert not (positives == anchors).any()  # never the anchor itself
    assert (labels[negatives] != labels[anchors]).all()  # another class
    counts = Counter(labels.tolist())
    expected = [
        i for i, c in enumerate(labels.tolist()) if counts[c] > 1 and len(counts) > 1
    ]  # brute force: another of its class, and another class in the batch
    assert anchors.tolist() == expected


def test_sampling_is_reproducible_with_a_seed_and_varies_without():
    labels = LABELS[-1]
    first = sample_triplets(labels, torch.Generator().manual_seed(7))
    again = sample_triplets(labels, torch.Generator().manual_seed(7))
    other = sample_triplets(labels, torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1]) and not torch.equal(first[2], other[2])
    torch.manual_seed(3)  # no generator: torch's global one, as seed_everything sets it
    from_global = sample_triplets(labels)
    torch.manual_seed(3)
    assert torch.equal(sample_triplets(labels)[1], from_global[1])


def test_every_valid_positive_and_negative_is_drawn_about_equally_often():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    draws = 3000
    generator = torch.Generator().manual_seed(0)
    picked_positive, picked_negative = Counter(), Counter()
    for _ in range(draws):
        anchors, positives, negatives = sample_triplets(labels, generator)
        picked_positive.update(zip(anchors.tolist(), positives.tolist(), strict=True))
        picked_negative.update(zip(anchors.tolist(), negatives.tolist(), strict=True))
    for anchor in range(len(labels)):
        if anchor == 9:  # class 3 has one image: never an anchor
            assert not any(a == 9 for a, _ in picked_positive)
            continue
        same = [j for j in range(len(labels)) if labels[j] == labels[anchor] and j != anchor]
        other = [j for j in range(len(labels)) if labels[j] != labels[anchor]]
        for candidates, picked in ((same, picked_positive), (other, picked_negative)):
            counts = [picked[(anchor, j)] for j in candidates]
            assert sum(counts) == draws
            expected = draws / len(candidates)
            # Binomial counts: 5 standard deviations either side of the uniform share.
            sd = (draws * (1 / len(candidates)) * (1 - 1 / len(candidates))) ** 0.5
            assert all(abs(c - expected) < 5 * sd + 1 for c in counts), (anchor, counts)


# -- the loss ---------------------------------------------------------------------------


def test_loss_is_torch_triplet_margin_loss_on_the_sampled_triplets():
    torch.manual_seed(0)
    embeddings = torch.randn(32, 5, requires_grad=True)
    labels = torch.arange(32) % 4
    loss_fn = SampledTripletLoss(margin=1.0)
    loss = loss_fn(embeddings, labels, torch.Generator().manual_seed(4))
    anchors, positives, negatives = sample_triplets(labels, torch.Generator().manual_seed(4))
    # Brute force, one triplet at a time, with plain Euclidean norms.
    terms = []
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist(), strict=True):
        d_ap = (embeddings[a] - embeddings[p]).norm()
        d_an = (embeddings[a] - embeddings[n]).norm()
        terms.append(torch.clamp(d_ap - d_an + 1.0, min=0.0))
    brute = torch.stack(terms)
    torch.testing.assert_close(loss, brute.mean(), atol=1e-4, rtol=1e-4)
    library = nn.TripletMarginLoss(margin=1.0)(
        embeddings[anchors], embeddings[positives], embeddings[negatives]
    )
    torch.testing.assert_close(loss, library)
    assert float(loss_fn.last_active_fraction) == pytest.approx(float((brute > 0).float().mean()))
    assert float(loss_fn.last_anchor_fraction) == 1.0
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_a_batch_without_any_triplet_gives_zero_and_zero_gradients():
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss_fn = SampledTripletLoss()
    loss = loss_fn(embeddings, torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(loss_fn.last_anchor_fraction) == 0.0
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    with pytest.raises(LabError, match="margin must be > 0"):
        SampledTripletLoss(margin=0.0)


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
    encoder = ContrastiveEmbedder(VGG(depth=11, embedding_dim=8), num_classes=3)
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
    model = ContrastiveEmbedder(
        SmallCNN(in_channels=1, batch_norm=True),
        num_classes=10,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    x, y = next(iter(DataLoader(data.val_set, batch_size=256)))

    def fixed_loss() -> float:  # the same triplets before and after
        model.eval()
        with torch.no_grad():
            features = model.features(x)
            loss = float(model.triplet_loss(features, y, torch.Generator().manual_seed(0)))
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
    assert "soft_margin" not in model.hparams and model.hparams["margin"] == 1.0


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
