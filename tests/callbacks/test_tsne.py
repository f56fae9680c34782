"""The t-SNE callback and its pieces: subsampling, embedding, files, TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from lab.callbacks import TSNEPlot
from lab.callbacks.tsne import embed_2d, plot_embedding, subsample
from lab.errors import LabError
from lab.models import resnet18
from lab.tasks import Classifier
from tests.helpers import quiet_trainer


def test_subsample_keeps_every_class_in_proportion_and_is_seeded():
    targets = np.repeat(np.arange(4), [100, 50, 30, 2])
    keep = subsample(targets, 60, seed=3)
    assert len(keep) == 60 and len(np.unique(keep)) == 60
    counts = np.bincount(targets[keep], minlength=4)
    assert counts.tolist()[3] >= 1  # a rare class is not dropped
    assert abs(counts[0] - 100 * 60 / 182) <= 2 and abs(counts[1] - 50 * 60 / 182) <= 2
    assert np.array_equal(keep, subsample(targets, 60, seed=3))
    assert not np.array_equal(keep, subsample(targets, 60, seed=4))
    assert np.array_equal(subsample(targets, 500), np.arange(len(targets)))


def test_embed_2d_separates_well_separated_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(3, 64))
    labels = np.repeat(np.arange(3), 40)
    features = centres[labels] + rng.normal(size=(120, 64))
    xy = embed_2d(features, pca_dim=10, perplexity=20, seed=0)
    assert xy.shape == (120, 2) and np.isfinite(xy).all()
    # Every point's nearest 2-D neighbour has its label.
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).all()
    assert np.allclose(xy, embed_2d(features, pca_dim=10, perplexity=20, seed=0))


def test_embed_2d_works_for_a_handful_of_points_and_refuses_fewer_than_3():
    assert embed_2d(np.random.default_rng(0).normal(size=(5, 8))).shape == (5, 2)
    with pytest.raises(LabError, match="at least 3"):
        embed_2d(np.zeros((2, 8)))


def test_embed_2d_runs_opentsne_with_the_same_choices_as_scikit_learn(monkeypatch):
    import openTSNE

    calls = {}
    real = openTSNE.TSNE

    class Spy(real):
        def __init__(self, **kwargs):
            calls.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(openTSNE, "TSNE", Spy)
    features = np.random.default_rng(0).normal(size=(90, 80))
    embed_2d(features, pca_dim=20, perplexity=10, seed=7)
    assert calls["perplexity"] == 10 and calls["initialization"] == "pca"
    assert calls["random_state"] == 7 and calls["learning_rate"] == 50.0


def test_opentsne_and_scikit_learn_maps_are_of_equal_quality():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 60)
    features = rng.normal(scale=2.0, size=(5, 100))[labels] + rng.normal(size=(300, 100))
    scores = []
    for method in ("opentsne", "sklearn"):
        xy = embed_2d(features, pca_dim=30, seed=0, method=method)
        d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        scores.append((labels[d.argmin(1)] == labels).mean())
    assert min(scores) > 0.9 and abs(scores[0] - scores[1]) < 0.05
    with pytest.raises(LabError, match="opentsne"):
        embed_2d(features, method="umap")


def test_plot_has_one_legend_entry_per_class_named():
    xy = np.random.default_rng(0).normal(size=(30, 2))
    labels = np.repeat(np.arange(3), 10)
    figure = plot_embedding(xy, labels, ["cat", "dog", "eel"])
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog", "eel"]


@pytest.mark.parametrize(
    "kwargs", [{"max_points": 2}, {"every_n_val_epochs": -1}, {"pca_dim": 1}, {"perplexity": 0}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(LabError, match="TSNEPlot"):
        TSNEPlot(**kwargs)


class Data(L.LightningDataModule):
    def __init__(self, n: int = 90, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % classes
        self.x = torch.randn(n, 1, 8, 8, generator=g) + self.y.view(-1, 1, 1, 1).float()
        self.class_names = ["zero", "one", "two"][:classes]

    def _loader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=16)

    train_dataloader = val_dataloader = test_dataloader = _loader


def test_callback_writes_csv_png_and_tensorboard_with_one_row_per_point(tmp_path: Path):
    torch.manual_seed(0)
    model = Classifier(resnet18(in_channels=1, small_input=True), num_classes=3)
    logger = TensorBoardLogger(tmp_path, name="run")
    callback = TSNEPlot(max_points=50, every_n_val_epochs=1)
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=2, logger=logger, callbacks=[callback]
    )
    data = Data()
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    run = Path(trainer.log_dir)

    table = pd.read_csv(run / "tsne.csv")
    assert list(table.columns) == ["x", "y", "label", "class_name"]
    assert len(table) == 50
    assert set(table["class_name"]) == {"zero", "one", "two"}
    assert (table["class_name"] == table["label"].map(dict(enumerate(data.class_names)))).all()
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()
    assert (run / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Validation every epoch: one pair per epoch, none for the sanity check.
    assert sorted(p.name for p in run.glob("tsne_val_epoch*.csv")) == [
        "tsne_val_epoch000.csv",
        "tsne_val_epoch001.csv",
    ]
    # TensorBoard: the figure (in the event file) and the projector's files.
    assert any(run.glob("events.out.tfevents.*"))
    assert (run / "projector_config.pbtxt").exists()
    metadata = sorted(run.glob("*/test_features/metadata.tsv"))
    assert len(metadata) == 1 and len(metadata[0].read_text().splitlines()) == 50
    assert not list(run.glob(".*.tmp"))


def test_features_that_are_not_finite_skip_the_map_with_a_warning(tmp_path: Path):
    # A diverged model: openTSNE's neighbour search would stop the test with a traceback.
    model = Classifier(resnet18(in_channels=1, small_input=True), num_classes=3)
    with torch.no_grad():
        next(model.backbone.parameters()).fill_(float("nan"))  # the first convolution
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet_trainer(logger=logger, callbacks=[TSNEPlot(max_points=50)])
    with pytest.warns(UserWarning, match=r"t-SNE of the test features skipped: 50 of 50"):
        trainer.test(model, datamodule=Data(), verbose=False)
    assert not (Path(trainer.log_dir) / "tsne.csv").exists()
