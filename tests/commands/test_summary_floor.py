"""lab summary --min METRIC=VALUE: the floor `make demo` checks its runs against."""

from __future__ import annotations

import pytest

from lab.cli import main


def run_with(root, name: str, acc: float):
    run = root / name / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(f"epoch,test/acc\n0,{acc}\n")
    return run


def test_a_run_below_the_floor_fails_in_one_line_after_the_table(tmp_path, capsys):
    good, bad = run_with(tmp_path, "good", 0.99), run_with(tmp_path, "bad", 0.97)
    main(["summary", str(good), "--min", "test/acc=0.98"])
    assert "0.9900" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["summary", str(good), str(bad), "--min", "test/acc=0.98", "--min", "test/x=0"])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and "0.9700" in out  # the table is printed first
    (line,) = err.strip().splitlines()
    assert f"{bad}: test/acc 0.9700 < 0.98" in line and "test/x nan < 0" in line
    assert line.count(f"{good}:") == 1  # the good run fails only the metric it lacks


def test_a_floor_that_is_not_metric_equals_value_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["summary", str(run_with(tmp_path, "r", 0.5)), "--min", "test/acc>0.9"])
    assert stop.value.code == 2 and "expected METRIC=VALUE" in capsys.readouterr().err
