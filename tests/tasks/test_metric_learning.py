"""Metric learning inside the task: center loss with its own optimizer, triplet with
and without cross-entropy, and nearest-centre classification."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid
from torch.utils.data import DataLoader, TensorDataset

from lab.data import DigitsDataModule
from lab.errors import LabError
from lab.losses import BatchHardTripletLoss, CenterLoss, CrossEntropy
from lab.models import ResNet
from lab.tasks import Classifier
from tests.helpers import quiet_trainer


def one_batch(n: int = 24, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % classes


def small_backbone(**kwargs) -> ResNet:
    return ResNet(depth=18, in_channels=1, small_input=True, **kwargs)


def center_task(backbone, num_classes: int, center_weight=0.1, center_lr=0.5, **kwargs):
    losses = [CrossEntropy(), CenterLoss(weight=center_weight, lr=center_lr)]
    return Classifier(backbone, num_classes, losses=losses, **kwargs)


def triplet_task(backbone, num_classes: int, weight: float | None = None, **kwargs):
    """Cross-entropy + weight * batch-hard triplet; the triplet alone when weight is None."""
    if weight is None:
        return Classifier(backbone, num_classes, losses=[BatchHardTripletLoss(**kwargs)])
    losses = [CrossEntropy(), BatchHardTripletLoss(weight=weight, **kwargs)]
    return Classifier(backbone, num_classes, losses=losses)


def centers_after_one_step(center_weight: float, center_lr: float = 0.5):
    torch.manual_seed(0)
    model = center_task(
        small_backbone(),
        num_classes=4,
        center_weight=center_weight,
        center_lr=center_lr,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
    )
    before = copy.deepcopy(model).eval()
    x, y = one_batch()
    quiet_trainer(max_steps=1, limit_val_batches=0).fit(
        model, DataLoader(TensorDataset(x, y), batch_size=len(y))
    )
    return before, model, x, y


def test_center_step_moves_centers_by_alpha_times_their_gradient_whatever_lambda():
    before, after_small, x, y = centers_after_one_step(center_weight=0.1)
    _, after_large, _, _ = centers_after_one_step(center_weight=1.0)
    # The features the centers saw: the training-mode forward of the initial model.
    before.train()
    with torch.no_grad():
        features = before.features(x)
    c0 = before.losses[1].centers.detach()
    # d(0.5 * mean ||x - c_y||^2) / dc_j = sum_{i: y_i = j} (c_j - x_i) / B
    grad = torch.zeros_like(c0).index_add_(0, y, c0[y] - features) / len(y)
    expected = c0 - 0.5 * grad
    torch.testing.assert_close(after_small.losses[1].centers.detach(), expected)
    torch.testing.assert_close(after_large.losses[1].centers.detach(), expected)
    # ...while lambda does change how the backbone moves.
    w_small = after_small.backbone.conv1.weight
    w_large = after_large.backbone.conv1.weight
    assert not torch.allclose(w_small, w_large)


def test_main_optimizer_leaves_the_centers_to_their_own():
    model = center_task(small_backbone(), num_classes=4)
    optimizer = model.configure_optimizers()
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.losses[1].centers) not in params
    assert len(params) == sum(1 for p in model.parameters()) - 1


def test_center_task_logs_both_terms():
    torch.manual_seed(0)
    model = center_task(small_backbone(), num_classes=4, center_weight=0.5)
    x, y = one_batch()
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=12))
    logged = trainer.callback_metrics
    assert {"train/loss", "train/ce", "train/center"} <= set(logged)
    total = logged["train/ce"] + 0.5 * logged["train/center"]
    torch.testing.assert_close(logged["train/loss"], total)


@pytest.mark.parametrize(
    ("term", "kwargs", "message"),
    [
        (CenterLoss, {"weight": -0.1}, "weight"),
        (CenterLoss, {"lr": 0.0}, "alpha"),
        (BatchHardTripletLoss, {"margin": 0.0}, "margin"),
        (BatchHardTripletLoss, {"weight": -1.0}, "weight"),
    ],
)
def test_bad_weights_and_margins_are_refused(term, kwargs, message):
    with pytest.raises(LabError, match=message):
        term(**kwargs)


def test_soft_margin_needs_no_margin():
    model = triplet_task(
        small_backbone(embedding_dim=8), num_classes=4, margin=0.0, soft_margin=True
    )
    (term,) = model.losses
    features, labels = torch.randn(8, 8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert (
        term.soft_margin and torch.isfinite(term(features, labels)) and term(features, labels) > 0
    )
    with pytest.raises(LabError, match="margin must be > 0"):
        triplet_task(small_backbone(embedding_dim=8), num_classes=4, margin=0.0)


@pytest.mark.parametrize("weight", [1.0, None], ids=["with-ce", "alone"])
def test_triplet_training_without_pk_batches_stops_before_training(weight):
    model = triplet_task(small_backbone(embedding_dim=8), num_classes=10, weight=weight)
    with pytest.raises(LabError, match="BatchHardTripletLoss needs P x K .*pk_classes"):
        quiet_trainer(max_steps=1).fit(model, datamodule=DigitsDataModule(batch_size=32))


def test_pk_batches_asking_more_images_than_a_class_has_stop_before_training():
    model = triplet_task(small_backbone(embedding_dim=8), num_classes=10)
    data = DigitsDataModule(pk_classes=4, pk_samples=200)
    with pytest.raises(LabError, match="pk_samples=200"):
        quiet_trainer(max_steps=1).fit(model, datamodule=data)


def test_triplet_classifier_logs_its_terms():
    torch.manual_seed(0)
    model = triplet_task(small_backbone(), num_classes=10, weight=2.0)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(pk_classes=4, pk_samples=4))
    logged = trainer.callback_metrics
    torch.testing.assert_close(
        logged["train/loss"], logged["train/ce"] + 2 * logged["train/triplet"]
    )
    assert 0.0 <= float(logged["train/active_triplets"]) <= 1.0


def test_embedder_classifies_by_the_nearest_training_centre(tmp_path):
    torch.manual_seed(0)
    data = DigitsDataModule(pk_classes=5, pk_samples=4)
    model = Classifier(
        small_backbone(embedding_dim=16, normalize_embedding=True),
        num_classes=10,
        losses=[BatchHardTripletLoss()],
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    )
    assert isinstance(model.backbone.fc, torch.nn.Identity)  # no classifier
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=10, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert model.means.ready and bool(model.means.present.all())  # the epoch's features
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]

    # The reference: embed the (unaugmented) training and test splits ourselves.
    model.eval()
    with torch.no_grad():
        train_x, train_y = data.train_set.tensors
        test_x, test_y = data.test_set.tensors
        train_f, test_f = model.features(train_x).numpy(), model.features(test_x).numpy()
    centroid = NearestCentroid().fit(train_f, train_y.numpy())
    expected = float((centroid.predict(test_f) == test_y.numpy()).mean())
    # Within one test image: sklearn's distances (numpy, one batch) and ours (torch, the
    # loader's batches) may round a near-tie apart (so did the code before issue 18).
    assert metrics["test/acc"] == pytest.approx(expected, abs=1 / len(test_y) + 1e-6)
    assert metrics["test/centroid_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    torch.testing.assert_close(
        model.means.centres, torch.from_numpy(centroid.centroids_).float(), atol=1e-5, rtol=1e-5
    )
    for key in ("test/acc_top5", "test/knn_acc", "test/precision_at_1", "test/map_at_r"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["test/acc_top5"] >= metrics["test/acc"]


def test_embedder_centres_travel_with_the_checkpoint(tmp_path):
    model = triplet_task(small_backbone(embedding_dim=8), num_classes=4)
    model.means.centres.copy_(torch.randn(4, 8))
    model.means.present.fill_(True)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)
    restored = triplet_task(small_backbone(embedding_dim=8), num_classes=4)
    assert not restored.means.ready
    restored.load_state_dict(torch.load(path)["state_dict"])
    torch.testing.assert_close(restored.means.centres, model.means.centres)
    assert restored.means.ready and bool(restored.means.present.all())
    x, _ = one_batch(classes=4)
    restored.eval()
    with torch.no_grad():
        assert restored(x).shape == (len(x), 4)


def test_an_untrained_embedder_has_no_logits_yet_but_still_trains():
    model = triplet_task(small_backbone(embedding_dim=8), num_classes=4)
    x, _ = one_batch()
    assert model(x) is None
    assert np.isfinite(model.features(x).detach().numpy()).all()


@pytest.mark.parametrize("name", ["demo-triplet", "demo-center"])
def test_a_cli_checkpoint_loads_without_arguments(lab, workdir, name):
    config = Path(__file__).resolve().parents[2] / "experiments" / f"{name}.yaml"
    tiny = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    lab("fit", "--config", config, *tiny, "--trainer.limit_val_batches=1")
    last = workdir / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt"
    model = Classifier.load_from_checkpoint(last)
    saved = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    torch.testing.assert_close(model.state_dict(), saved)  # centres / centre means too
    assert [type(t).__name__ for t in model.losses] == (
        ["BatchHardTripletLoss"] if name == "demo-triplet" else ["CrossEntropy", "CenterLoss"]
    )
    x, _ = one_batch()
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (len(x), 10)
