"""predictions.csv and intervals.csv: written by every test, and the accuracy recomputed
from them equals the logged ``test/acc`` for a classifier and a triplet embedder."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from lab.callbacks import TestEvaluation
from lab.callbacks.predictions import predictions_table
from lab.data import DigitsDataModule
from lab.errors import LabError
from lab.losses import BatchHardTripletLoss
from lab.models import ResNet
from lab.runs.predictions import (
    accuracy_of,
    intervals_table,
    read_intervals,
    read_predictions,
    run_intervals,
    write_predictions,
)
from lab.runs.stats import wilson_interval
from lab.tasks import Classifier
from tests import helpers


def test_predictions_table_columns_top5_and_scores() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    table = predictions_table(logits, torch.tensor([1, 1, 0]), ["a", "b", "c"])
    assert list(table.columns) == [
        "index",
        "target",
        "target_name",
        "prediction",
        "prediction_name",
        "score",
        "top5",
    ]
    assert table["prediction"].tolist() == [1, 0, 2]  # a tie goes to the first class
    assert table["prediction_name"].tolist() == ["b", "a", "c"]
    assert table["top5"].tolist() == ["1 2 0", "0 1 2", "2 0 1"]
    expected = torch.softmax(logits, 1).max(1).values.numpy()
    assert np.allclose(table["score"], expected)
    raw = predictions_table(logits, torch.tensor([1, 1, 0]), ["a", "b", "c"], softmax=False)
    assert raw["score"].tolist() == [3.0, 2.0, 5.0]
    with pytest.raises(LabError, match="one class name per"):
        predictions_table(logits, torch.tensor([1, 1, 0]), ["a", "b"])


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    table = predictions_table(torch.eye(4) * 3, torch.tensor([0, 1, 2, 0]), list("wxyz"))
    write_predictions(tmp_path / "predictions.csv", table)
    back = read_predictions(tmp_path)
    assert back["top5"].tolist() == table["top5"].tolist()
    assert accuracy_of(back) == 0.75
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    with pytest.raises(LabError, match="no predictions.csv"):
        read_predictions(tmp_path / "elsewhere")
    # without intervals.csv, the run's intervals come from its predictions
    intervals = run_intervals(tmp_path)
    assert intervals["test/acc"] == pytest.approx((0.75, *wilson_interval(3, 4)))


def test_intervals_table_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 100)
    scores = rng.normal(size=(100, 3))
    scores[np.arange(100), y] += 2
    table = intervals_table(y, scores.argmax(1), scores, n_resamples=200)
    assert table["metric"].tolist() == ["test/acc", "test/macro_f1", "test/auc_macro"]
    assert table["method"].iloc[0] == "wilson"
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()


def quiet_trainer(tmp_path: Path) -> L.Trainer:
    return helpers.quiet_trainer(
        callbacks=[TestEvaluation(confusion_matrix=False, bootstrap_resamples=100)],
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
    )


def check_files_against(results: dict[str, float], run: Path) -> pd.DataFrame:
    table = read_predictions(run)
    assert len(table) == 360 and table["index"].tolist() == list(range(360))
    assert accuracy_of(table) == pytest.approx(results["test/acc"], abs=1e-6)
    value, low, high = read_intervals(run)["test/acc"]
    assert value == pytest.approx(results["test/acc"], abs=1e-6)
    assert low <= value <= high
    return table


def test_classifier_predictions_give_the_logged_accuracy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = ResNet(depth=18, in_channels=1, small_input=True)
    model = Classifier(backbone, num_classes=10, embedding_metrics=False)
    data = DigitsDataModule(batch_size=64)
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, datamodule=data)
    (results,) = trainer.test(model, datamodule=data, verbose=False)
    table = check_files_against(results, tmp_path)
    assert set(read_intervals(tmp_path)) == {"test/acc", "test/macro_f1", "test/auc_macro"}
    assert (table["score"] > 0).all() and (table["score"] <= 1).all()


def test_triplet_alone_predictions_are_the_nearest_centre_ones(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = ResNet(depth=18, in_channels=1, small_input=True, embedding_dim=16)
    model = Classifier(
        backbone, num_classes=10, losses=[BatchHardTripletLoss()], embedding_metrics=False
    )
    data = DigitsDataModule(pk_classes=5, pk_samples=4)
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, datamodule=data)
    (results,) = trainer.test(model, datamodule=data, verbose=False)
    table = check_files_against(results, tmp_path)
    # the predictions are the nearest training centres'
    model.eval()
    with torch.no_grad():
        test_x, _ = data.test_set.tensors
        distances = torch.cdist(model.features(test_x), model.means.centres)
        distances[:, ~model.means.present] = float("inf")  # classes without a centre yet
        nearest = distances.argmin(1).numpy()
    assert np.array_equal(table["prediction"].to_numpy(), nearest)
