"""The headline numbers of one run folder (``summarize``), read from its ``metrics.csv``
and ``run.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.runs.layout import read_run_info

# The test metrics a summary shows, when a run has them.
HEADLINE_METRICS = (
    "before/acc",  # the test split before fine-tuning (lab.callbacks.BeforeFitEvaluation)
    "test/acc",
    "test/acc_top5",
    "test/knn_acc",
    "test/precision_at_1",
    "test/map_at_r",
    "test/loss",
)


def summarize(run_dir: Path) -> dict[str, Any]:
    """Headline numbers of one run: test metrics, best val accuracy, epochs, wall time."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise LabError(f"{run_dir} has no metrics.csv; is it a run folder of `lab fit`?")
    metrics = pd.read_csv(metrics_file)
    row: dict[str, Any] = {"run": str(run_dir)}
    if "epoch" in metrics and metrics["epoch"].notna().any():
        row["epochs"] = int(metrics["epoch"].max()) + 1
    if "val/acc" in metrics and metrics["val/acc"].notna().any():
        row["best val/acc"] = float(metrics["val/acc"].max())
    for column in HEADLINE_METRICS:
        if column in metrics and metrics[column].notna().any():
            row[column] = float(metrics[column].dropna().iloc[-1])
    info = read_run_info(run_dir)
    trainable = info.get("parameters", {}).get("trainable")
    if trainable is not None:
        row["trainable params"] = int(trainable)
    seconds = info.get("seconds", {})
    for stage in ("fit", "test"):
        if stage in seconds:
            row[f"{stage} seconds"] = round(float(seconds[stage]), 1)
    return row
