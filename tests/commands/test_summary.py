"""``lab summary``: a row per run, its objective in words and its headline numbers as every
table of runs writes them (lab.runs.metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lab.cli import main
from lab.commands.summary import summary_table


def fake_run(folder: Path, config: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "epoch": [0, 1, None],
            "val/acc": [0.5, 0.75, None],
            "test/acc": [None, None, 0.9],
            "test/loss": [None, None, 0.3],
        }
    ).to_csv(folder / "metrics.csv", index=False)
    info = {"parameters": {"trainable": 12345}, "seconds": {"fit": 12.34}}
    (folder / "run.json").write_text(json.dumps(info))
    pd.DataFrame(
        {"metric": ["test/acc"], "value": [0.9], "low": [0.8], "high": [0.95], "method": ["w"]}
    ).to_csv(folder / "intervals.csv", index=False)
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_a_row_per_run_objective_first_then_the_registrys_metrics(tmp_path):
    model = {"class_path": "lab.tasks.Classifier", "init_args": {"label_smoothing": 0.1}}
    runs = [fake_run(tmp_path / "a", {"model": model}), fake_run(tmp_path / "b")]
    table = summary_table(runs)
    assert list(table.columns) == [
        "objective",
        "test/acc",
        "test/loss",
        "best val/acc",
        "epochs",
        "trainable params",
        "fit seconds",
    ]
    row = table.loc[str(runs[0])]
    assert row["objective"] == "cross-entropy, label smoothing 0.1"
    assert row["test/acc"] == "0.9000 [0.8000, 0.9500]"
    assert row["best val/acc"] == "0.7500" and row["epochs"] == "2"
    assert row["trainable params"] == "12,345" and row["fit seconds"] == "12.3"
    assert table.loc[str(runs[1]), "objective"] == ""  # no config.yaml
    assert "objective" not in summary_table(runs[1:]).columns


def test_lab_summary_prints_the_table(tmp_path, capsys: pytest.CaptureFixture):
    run = fake_run(tmp_path / "logs" / "demo" / "version_0")
    main(["summary", "demo", "--log_root", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert str(run) in out and "| 0.9000 [0.8000, 0.9500] |" in out
