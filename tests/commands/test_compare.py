"""``lab compare`` and the report's paired comparisons on hand-made predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from lab.cli import main
from lab.commands.compare import compare_predictions, same_test_set
from lab.commands.report.paired import paired_section
from lab.commands.report.reading import load_run
from lab.errors import LabError
from lab.runs.stats import wilson_interval


def predictions(targets: np.ndarray, right: np.ndarray) -> pd.DataFrame:
    """A predictions table whose prediction is the target where ``right``, else the next class."""
    prediction = np.where(right, targets, (targets + 1) % 3)
    return pd.DataFrame(
        {"index": np.arange(len(targets)), "target": targets, "prediction": prediction}
    )


def make_run(root: Path, name: str, table: pd.DataFrame) -> Path:
    run = root / name / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,test/acc\n0,0.5\n")
    table.to_csv(run / "predictions.csv", index=False)
    return run


TARGETS = np.arange(200) % 3


def outcomes(only_a: int, only_b: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros(200, bool)
    b = np.zeros(200, bool)
    a[:150] = b[:150] = True  # both right on 150 images
    a[150 : 150 + only_a] = True
    b[150 + only_a : 150 + only_a + only_b] = True
    return a, b


def test_comparison_numbers() -> None:
    a, b = outcomes(20, 4)
    c = compare_predictions(predictions(TARGETS, a), predictions(TARGETS, b), "x", "y")
    assert (c.n, c.correct_a, c.correct_b, c.only_a, c.only_b) == (200, 170, 154, 20, 4)
    assert c.interval_a == pytest.approx(wilson_interval(170, 200))
    assert c.p_value == pytest.approx(2 * binom.cdf(4, 24, 0.5))
    assert c.difference == pytest.approx(0.08)
    assert c.difference_interval[0] > 0
    assert c.verdict.startswith("x is better than y (p = ")


def test_no_discordant_images_is_noise_with_p_one() -> None:
    a, _ = outcomes(0, 0)
    c = compare_predictions(predictions(TARGETS, a), predictions(TARGETS, a))
    assert (c.only_a, c.only_b, c.p_value) == (0, 0, 1.0)
    assert c.verdict == "the difference is within noise (p = 1)"


def test_different_test_sets_are_refused() -> None:
    a, b = outcomes(3, 3)
    shorter = predictions(TARGETS[:199], a[:199])
    with pytest.raises(LabError, match=r"different test sets \(199 and 200 images\)"):
        compare_predictions(shorter, predictions(TARGETS, b))
    other = predictions((TARGETS + 1) % 3, b)
    assert not same_test_set(predictions(TARGETS, a), other)
    with pytest.raises(LabError, match="true classes differ"):
        compare_predictions(predictions(TARGETS, a), other)


def test_lab_compare_prints_and_refuses_in_one_line(workdir: Path, capsys) -> None:
    root = workdir / "lightning_logs"
    a, b = outcomes(3, 2)
    make_run(root, "one", predictions(TARGETS, a))
    make_run(root, "two", predictions(TARGETS, b))
    main(["compare", "one", "two"])
    out = capsys.readouterr().out
    assert "test images: 200" in out
    assert "only A right: 3, only B right: 2" in out
    assert f"exact McNemar p = {2 * binom.cdf(2, 5, 0.5):.3g}" in out
    assert "verdict: the difference is within noise (p = 1)" in out
    assert "76.50% [" in out and "(153/200)" in out  # A: 150 + 3 right

    make_run(root, "short", predictions(TARGETS[:100], a[:100]))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "one", "short"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "different test sets" in err

    (root / "bare" / "version_0").mkdir(parents=True)
    (root / "bare" / "version_0" / "metrics.csv").write_text("epoch\n0\n")
    with pytest.raises(SystemExit):
        main(["compare", "one", "bare"])
    assert "no predictions.csv" in capsys.readouterr().err


def test_report_section_compares_each_pair_on_the_same_images(tmp_path: Path) -> None:
    a, b = outcomes(30, 2)
    runs = [
        load_run(make_run(tmp_path, "a", predictions(TARGETS, a)), "a"),
        load_run(make_run(tmp_path, "b", predictions(TARGETS, b)), "b"),
        load_run(make_run(tmp_path, "c", predictions(TARGETS, b)), "c"),
        load_run(make_run(tmp_path, "other", predictions(TARGETS[:50], a[:50])), "other"),
    ]
    assert runs[0].intervals["test/acc"][0] == pytest.approx(180 / 200)  # from predictions
    text = "\n".join(paired_section(runs))
    assert text.startswith("## Paired comparisons")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 3  # header, then a-b, a-c, b-c; "other" has other images
    assert "a is better than b" in text
    assert any([cell.strip() for cell in row.split("|")[1:3]] == ["b", "c"] for row in rows)
    assert "within noise (p = 1)" in text
    assert paired_section(runs[:1]) == []
