"""The report's "Paired comparisons" section: every pair of runs tested on the same
images, compared as ``lab compare`` does (difference, interval, McNemar p, verdict)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import pandas as pd

from lab.commands.compare import Comparison, compare_predictions, same_test_set
from lab.commands.report.reading import Run
from lab.errors import LabError
from lab.runs.predictions import PREDICTIONS_FILE, read_predictions


def paired_comparisons(runs: Sequence[Run]) -> list[Comparison]:
    """The comparison of each pair of runs (in report order) whose ``predictions.csv``
    cover the same test images; runs without predictions are left out."""
    tables: dict[str, pd.DataFrame] = {}
    for run in runs:
        if (run.path / PREDICTIONS_FILE).is_file():
            try:
                tables[run.id] = read_predictions(run.path)
            except LabError:
                continue
    found = []
    for (name_a, a), (name_b, b) in combinations(tables.items(), 2):
        if same_test_set(a, b):
            found.append(compare_predictions(a, b, name_a, name_b))
    return found


def paired_section(runs: Sequence[Run]) -> list[str]:
    """Markdown lines of the section ([] with fewer than two comparable runs)."""
    comparisons = paired_comparisons(runs)
    if not comparisons:
        return []
    rows = []
    for c in comparisons:
        low, high = c.difference_interval
        difference = f"{100 * c.difference:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"
        rows.append(
            {
                "A": c.name_a,
                "B": c.name_b,
                "images": str(c.n),
                "A - B (points)": difference,
                "only A / only B right": f"{c.only_a} / {c.only_b}",
                "McNemar p": f"{c.p_value:.3g}",
                "verdict": c.verdict,
            }
        )
    return [
        "## Paired comparisons",
        "",
        "Each pair of runs tested on the same images: the accuracy difference with its 95% "
        "paired-bootstrap interval, the images only one of them gets right, and the exact "
        "McNemar test on those (docs/uncertainty.md).",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
    ]
