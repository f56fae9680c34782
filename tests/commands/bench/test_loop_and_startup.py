"""lab bench startup and lab bench loop: what they time, print and record (on stand-ins:
the figures themselves are for results/, not for a test)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from lab.commands.bench import loop, startup
from lab.errors import LabError


def test_startup_times_each_probe_beside_torch_and_records_it(monkeypatch, tmp_path, capsys):
    assert {"import torch", "lab --help", "lab summary --help", "lab fit --help"} <= set(
        startup.probes()
    )
    quick = [sys.executable, "-c", "pass"]
    monkeypatch.setattr(startup, "probes", lambda: {"import torch": quick, "lab --help": quick})
    monkeypatch.setenv("LAB_RESULTS", str(tmp_path))
    startup.main(["--repeats", "1", "--record"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[-1] == "1.00"  # import torch / import torch
    rows = pd.read_csv(tmp_path / "benchmarks.csv")
    assert rows["name"].tolist() == ["startup-import-torch", "startup-lab"]
    assert (rows["unit"] == "s").all() and (rows["figure"] > 0).all()
    assert rows["command"].iloc[0] == "lab bench startup --repeats 1 --record"


def test_loop_times_each_target_and_a_failing_one_is_one_line(tmp_path, monkeypatch, capsys):
    make = tmp_path / "make"
    make.write_text('#!/bin/sh\necho "made $1"\n[ "$1" = demo ]\n')
    make.chmod(0o755)
    monkeypatch.setenv("LAB_RESULTS", str(tmp_path))
    log = tmp_path / "logs"
    loop.main(["--targets", "demo", "--make", str(make), "--log", str(log), "--record"])
    assert capsys.readouterr().out.startswith("make demo: ")
    assert (log / "make-demo.log").read_text() == "made demo\n"
    assert pd.read_csv(tmp_path / "benchmarks.csv")["name"].tolist() == ["make-demo"]
    with pytest.raises(LabError, match=r"make test failed \(exit 1\) after .* see .*make-test.log"):
        loop.main(["--targets", "test", "--make", str(make), "--log", str(log)])
