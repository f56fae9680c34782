"""``lab summary [EXPERIMENT | RUN_DIR ...]``: the headline numbers of runs, as a table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lab.errors import LabError
from lab.runs import latest_run, log_root, summarize


def _run_dirs(targets: Sequence[str], root: Path) -> list[Path]:
    runs = []
    for target in targets:
        path = Path(target)
        if (path / "metrics.csv").is_file():
            runs.append(path)
            continue
        experiment_dir = path if path.is_dir() else root / target
        run = latest_run(experiment_dir)
        if run is None:
            raise LabError(f"no run of '{target}' under {experiment_dir}; run `lab fit` first")
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    """Print a Markdown table of the latest run of each experiment (or of given run folders)."""
    parser = argparse.ArgumentParser(prog="lab summary", description=__doc__)
    parser.add_argument("targets", nargs="+", help="experiment names or run folders")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    args = parser.parse_args(argv)
    rows = [summarize(run) for run in _run_dirs(args.targets, log_root(args.log_root))]
    table = pd.DataFrame(rows).set_index("run")
    for column in ("epochs", "trainable params"):
        if column in table:
            table[column] = table[column].astype("Int64")  # not 15.0000
    formats = ["", *(".1f" if c.endswith(" seconds") else ".4f" for c in table)]  # run first
    print(table.to_markdown(floatfmt=formats))
