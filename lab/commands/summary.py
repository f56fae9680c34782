"""``lab summary [EXPERIMENT | RUN_DIR ...]``: the headline numbers of runs, as a table.

Test accuracy, macro F1 and macro AUC carry their 95% interval in brackets (Wilson for
accuracy, a bootstrap over test images for the others; see docs/uncertainty.md), read
from the run's ``intervals.csv`` or computed from its ``predictions.csv``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.runs.folders import find_runs
from lab.runs.layout import log_root
from lab.runs.metrics import summarize
from lab.runs.predictions import run_intervals


def _cell(column: str, value: Any, intervals: dict[str, tuple[float, float, float]]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("epochs", "trainable params"):
        return str(int(value))
    if column.endswith(" seconds"):
        return f"{float(value):.1f}"
    if isinstance(value, float):
        text = f"{value:.4f}"
        _, low, high = intervals.get(column, (value, math.nan, math.nan))
        if math.isfinite(low) and math.isfinite(high):
            text += f" [{low:.4f}, {high:.4f}]"
        return text
    return str(value)


def summary_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row of strings per run folder: its headline numbers, intervals in brackets."""
    rows = []
    for run in runs:
        values = summarize(run)
        intervals = run_intervals(run)
        for metric, (value, _, _) in intervals.items():
            values.setdefault(metric, value)  # macro F1 / AUC when only the intervals have them
        rows.append({c: _cell(c, v, intervals) if c != "run" else v for c, v in values.items()})
    return pd.DataFrame(rows).fillna("").set_index("run")


def main(argv: Sequence[str] | None = None) -> None:
    """Print a Markdown table of the latest run of each experiment (or of given run folders)."""
    parser = argparse.ArgumentParser(prog="lab summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", help="experiment names or run folders")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    args = parser.parse_args(argv)
    table = summary_table(find_runs(args.targets, log_root(args.log_root)))
    print(table.to_markdown(disable_numparse=True))
