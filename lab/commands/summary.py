"""``lab summary [EXPERIMENT | RUN_DIR ...]``: what runs trained and their headline
numbers, as a table.

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

from lab.errors import LabError
from lab.runs.folders import find_runs
from lab.runs.layout import log_root
from lab.runs.metrics import BY_NAME, format_table, summarize
from lab.runs.objective import run_objective
from lab.runs.predictions import run_intervals


def summary_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row of strings per run folder: its objective in words (:mod:`lab.runs.objective`,
    from its config.yaml) and its headline numbers (:mod:`lab.runs.metrics`), intervals
    in brackets."""
    rows = []
    for run in runs:
        values = summarize(run)
        values["objective"] = run_objective(run)
        for metric, (value, low, high) in run_intervals(run).items():
            values.setdefault(metric, value)  # macro F1 / AUC when only the intervals have them
            values[f"{metric} low"], values[f"{metric} high"] = low, high
        rows.append(values)
    table = pd.DataFrame(rows)
    if table["objective"].isna().all():  # no run has a config.yaml
        table = table.drop(columns="objective")
    first = [c for c in ("run", "objective", *BY_NAME) if c in table]
    table = table[first + [c for c in table.columns if c not in first]]
    return format_table(table).set_index("run")


def main(argv: Sequence[str] | None = None) -> None:
    """Print a Markdown table of the latest run of each experiment (or of given run folders)."""
    parser = argparse.ArgumentParser(prog="lab summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", help="experiment names or run folders")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    parser.add_argument(
        "--min",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail (exit 2) if a run's METRIC is below VALUE, e.g. --min test/acc=0.98",
    )
    args = parser.parse_args(argv)
    floors = [parse_floor(text) for text in args.min]
    runs = find_runs(args.targets, log_root(args.log_root))
    print(summary_table(runs).to_markdown(disable_numparse=True))
    below = [f"{run}: {m} {v:.4f} < {floor:g}" for run, m, v, floor in shortfalls(runs, floors)]
    if below:
        raise LabError("below the floor: " + "; ".join(below))


def parse_floor(text: str) -> tuple[str, float]:
    """``METRIC=VALUE`` of ``--min``, e.g. ``test/acc=0.98``."""
    metric, _, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        raise LabError(f"--min {text!r}: expected METRIC=VALUE, e.g. test/acc=0.98") from None


def shortfalls(
    runs: Sequence[Any], floors: Sequence[tuple[str, float]]
) -> list[tuple[Any, str, float, float]]:
    """``(run, metric, value, floor)`` for every run whose metric is below its floor (a
    metric the run lacks counts as below: NaN)."""
    found = []
    for run in runs:
        values = summarize(run)
        for metric, floor in floors:
            value = values.get(metric)
            value = math.nan if value is None else float(value)
            if not value >= floor:
                found.append((run, metric, value, floor))
    return found
