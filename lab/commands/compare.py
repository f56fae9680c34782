"""``lab compare RUN_A RUN_B``: is A really better than B on the same test images?

::

    lab compare demo demo-triplet          # the newest run of each experiment
    lab compare lightning_logs/demo/version_0 lightning_logs/demo/version_1
    lab compare lightning_logs/stl10-svm/version_0/penultimate-rbf-standard demo

Reads both runs' ``predictions.csv`` (written by ``lab test``) and prints each run's
accuracy with its 95% Wilson interval, the difference A - B with a paired bootstrap
interval, how many images only A and only B get right, the exact McNemar p-value on
those, and one sentence saying whether the difference is within noise (p >= 0.05).
Runs tested on different images are refused. See docs/uncertainty.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lab.errors import LabError
from lab.runs.folders import resolve_run
from lab.runs.layout import log_root
from lab.runs.metrics import format_cell
from lab.runs.predictions import PREDICTIONS_FILE, read_predictions
from lab.runs.stats import mcnemar_exact, paired_difference, verdict, wilson_interval


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of two runs on the same test images."""

    name_a: str
    name_b: str
    n: int
    correct_a: int
    correct_b: int
    interval_a: tuple[float, float]
    interval_b: tuple[float, float]
    difference: float
    difference_interval: tuple[float, float]
    only_a: int
    only_b: int
    p_value: float

    @property
    def accuracy_a(self) -> float:
        return self.correct_a / self.n

    @property
    def accuracy_b(self) -> float:
        return self.correct_b / self.n

    @property
    def verdict(self) -> str:
        """One sentence: which is better, or that the difference is within noise."""
        return verdict(self.p_value, self.accuracy_a, self.accuracy_b, self.name_a, self.name_b)


def same_test_set(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two ``predictions.csv`` tables are of the same test images: same length,
    same target at every index."""
    if len(a) != len(b):
        return False
    a, b = a.sort_values("index"), b.sort_values("index")
    return bool(
        np.array_equal(a["index"].to_numpy(), b["index"].to_numpy())
        and np.array_equal(a["target"].to_numpy(), b["target"].to_numpy())
    )


def compare_predictions(
    a: pd.DataFrame, b: pd.DataFrame, name_a: str = "A", name_b: str = "B"
) -> Comparison:
    """The paired comparison of two runs' predictions; a :class:`LabError` when they are
    not of the same test images."""
    if len(a) != len(b):
        raise LabError(
            f"{name_a} and {name_b} were tested on different test sets ({len(a)} and {len(b)} "
            "images): compare runs of the same data split"
        )
    if not same_test_set(a, b):
        raise LabError(
            f"{name_a} and {name_b} were tested on different test sets (the true classes "
            "differ at some index): compare runs of the same data split"
        )
    a, b = a.sort_values("index"), b.sort_values("index")
    right_a = (a["prediction"] == a["target"]).to_numpy()
    right_b = (b["prediction"] == b["target"]).to_numpy()
    n = len(a)
    if n == 0:
        raise LabError(f"{name_a} and {name_b} have no test predictions to compare")
    difference, low, high = paired_difference(right_a, right_b)
    test = mcnemar_exact(right_a, right_b)
    return Comparison(
        name_a=name_a,
        name_b=name_b,
        n=n,
        correct_a=int(right_a.sum()),
        correct_b=int(right_b.sum()),
        interval_a=wilson_interval(int(right_a.sum()), n),
        interval_b=wilson_interval(int(right_b.sum()), n),
        difference=difference,
        difference_interval=(low, high),
        only_a=test.only_a,
        only_b=test.only_b,
        p_value=test.p_value,
    )


def _accuracy(value: float, interval: tuple[float, float]) -> str:
    return format_cell("test/acc", value, *interval, prose=True)


def describe(c: Comparison) -> str:
    """The comparison as lines of text, as ``lab compare`` prints it."""
    width = max(len(c.name_a), len(c.name_b))
    low, high = c.difference_interval
    return "\n".join(
        [
            f"test images: {c.n}",
            f"A {c.name_a:<{width}}  accuracy {_accuracy(c.accuracy_a, c.interval_a)}"
            f"  ({c.correct_a}/{c.n})",
            f"B {c.name_b:<{width}}  accuracy {_accuracy(c.accuracy_b, c.interval_b)}"
            f"  ({c.correct_b}/{c.n})",
            f"A - B: {100 * c.difference:+.2f} points, 95% interval "
            f"[{100 * low:+.2f}, {100 * high:+.2f}] (paired bootstrap)",
            f"only A right: {c.only_a}, only B right: {c.only_b}; "
            f"exact McNemar p = {c.p_value:.3g}",
            f"verdict: {c.verdict}",
        ]
    )


def compare_runs(run_a: Path, run_b: Path, name_a: str, name_b: str) -> Comparison:
    """The paired comparison of two run folders' ``predictions.csv``."""
    return compare_predictions(read_predictions(run_a), read_predictions(run_b), name_a, name_b)


def _run_or_folder(target: str, root: Path) -> Path:
    """A folder that holds ``predictions.csv`` itself (a ``lab svm`` setting's), else the
    run a name stands for (:func:`lab.runs.folders.resolve_run`)."""
    if (Path(target) / PREDICTIONS_FILE).is_file():
        return Path(target)
    return resolve_run(target, root)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the paired comparison of two runs."""
    parser = argparse.ArgumentParser(
        prog="lab compare",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_a", help="run folder or experiment name (its newest run)")
    parser.add_argument("run_b", help="run folder or experiment name (its newest run)")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    args = parser.parse_args(argv)
    root = log_root(args.log_root)
    path_a, path_b = _run_or_folder(args.run_a, root), _run_or_folder(args.run_b, root)
    print(describe(compare_runs(path_a, path_b, args.run_a, args.run_b)))
