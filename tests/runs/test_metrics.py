"""lab.runs.metrics: the registry of headline metrics, the one cell formatter, and the
headline numbers of a run read from its files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lab.errors import LabError
from lab.runs.metrics import (
    BY_NAME,
    METRICS,
    RECORDED,
    SEED_METRICS,
    format_cell,
    format_table,
    headline,
    summarize,
)

NAN = float("nan")


def test_the_registry_names_each_metric_once_with_a_known_kind():
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names)) and set(BY_NAME) == set(names)
    assert {m.kind for m in METRICS} <= {"share", "score", "count", "seconds"}
    assert {m.report for m in METRICS} <= {"always", "when any", "never"}
    records = [m.record for m in RECORDED]
    assert records == ["test_acc", "knn_acc", "precision_at_1", "map_at_r", "best_val_acc",
                       "epochs", "fit_seconds"]  # fmt: skip
    assert SEED_METRICS[0] == "test/acc" and "epochs" not in SEED_METRICS
    # Only what intervals.csv holds (lab.runs.predictions.intervals_table) has an interval.
    assert [m.name for m in METRICS if m.interval] == [
        "test/acc",
        "test/macro_f1",
        "test/auc_macro",
    ]


@pytest.mark.parametrize(
    ("name", "value", "bounds", "prose", "expected"),
    [
        ("test/acc", 0.98889, (0.97111, 0.99571), False, "0.9889 [0.9711, 0.9957]"),
        ("test/acc", 0.98889, (0.97111, 0.99571), True, "98.89% [97.1, 99.6]"),
        ("test/acc", 0.5, (NAN, NAN), True, "50.00%"),  # no interval known
        ("test/acc", 0.5, (None, 0.6), False, "0.5000"),
        ("test/map_at_r", 0.94155, (None, None), True, "0.9415"),  # a score: never a percent
        ("test/macro_f1", 0.5, (0.4, 0.6), True, "0.5000 [0.4000, 0.6000]"),
        ("epochs", 15.0, (None, None), False, "15"),
        ("trainable params", 11172042, (None, None), False, "11,172,042"),
        ("fit seconds", 126.94, (None, None), False, "126.9"),
        ("fit seconds", 126.94, (None, None), True, "126.9 s"),
        ("val/loss", 0.123456, (None, None), False, "0.1235"),  # not registered: a score
        ("test/acc", None, (None, None), True, ""),
        ("test/acc", NAN, (0.1, 0.2), False, ""),
    ],
)
def test_a_cell_is_written_one_way(name, value, bounds, prose, expected):
    assert format_cell(name, value, *bounds, prose=prose) == expected


def test_a_table_folds_the_bounds_into_their_metric_and_writes_the_rest_as_is():
    table = pd.DataFrame(
        {
            "run": ["a", "b"],
            "lr": [0.01, 3e-05],
            "test/acc": [0.9, NAN],
            "test/acc low": [0.85, NAN],
            "test/acc high": [0.95, NAN],
            "epochs": [3, 4],
            "status": ["ok", "failed (fit)"],
        }
    )
    shown = format_table(table)
    assert list(shown.columns) == ["run", "lr", "test/acc", "epochs", "status"]
    assert shown["test/acc"].tolist() == ["0.9000 [0.8500, 0.9500]", ""]
    assert shown["lr"].tolist() == ["0.01", "3e-05"]
    assert shown["epochs"].tolist() == ["3", "4"]
    assert format_table(table, other=lambda c, v: f"<{v}>")["status"].tolist() == [
        "<ok>",
        "<failed (fit)>",
    ]


def test_headline_numbers_come_from_the_metrics_and_run_json(tmp_path):
    metrics = pd.DataFrame(
        {
            "epoch": [0, 1, 2, 3],  # a test after fit logs at epoch == max_epochs
            "val/acc": [0.5, 0.8, 0.7, None],
            "test/acc": [None, None, None, 0.9],
            "test/macro_f1": [None, None, None, 0.88],
            "train/loss": [1.0, 0.5, 0.4, None],
        }
    )
    info = {"parameters": {"trainable": 1234}, "seconds": {"fit": 12.345, "test": 1.0}}
    found = headline(metrics, info)
    assert found == {
        "test/acc": 0.9,
        "test/macro_f1": 0.88,
        "best val/acc": 0.8,
        "epochs": 3,
        "trainable params": 1234,
        "fit seconds": 12.3,
        "test seconds": 1.0,
    }
    assert list(found) == [name for name in BY_NAME if name in found]  # the registry's order
    assert "train/loss" not in found
    run = tmp_path / "run"
    run.mkdir()
    metrics.to_csv(run / "metrics.csv", index=False)
    (run / "run.json").write_text(json.dumps(info))
    assert summarize(run) == {"run": str(run), **found}
    assert math.isclose(headline(metrics, {})["best val/acc"], 0.8)
    with pytest.raises(LabError, match="no metrics.csv"):
        summarize(tmp_path)
