"""Run folders of ``lab fit``: two loggers made before either writes get two folders, and
``--run_name slurm`` puts a job in ``slurm-<job>_<task>``, where a requeue resumes it."""

from __future__ import annotations

import pytest
import torch

from lab.cli.loggers import CurvesTensorBoardLogger
from tests.conftest import REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
SHORT = short_fit(1, 2, 1, "--trainer.callbacks=[]")


def test_loggers_made_before_either_writes_get_different_folders(tmp_path):
    first, second = (CurvesTensorBoardLogger(tmp_path, name="demo") for _ in range(2))
    # Lightning's listing gave both version_0: neither had written anything yet.
    assert (first.version, second.version) == (0, 1)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["version_0", "version_1"]


def test_a_requeued_slurm_task_resumes_its_own_run(lab, workdir, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1005")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "1000")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    args = ["fit", "--config", DEMO, *SHORT, "--run_name", "slurm", "--ckpt_path", "auto"]
    lab(*args)  # the first start: nothing to resume
    run = workdir / "lightning_logs" / "demo" / "slurm-1000_5"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    lab(*args, "--trainer.max_epochs=2")  # the requeue: resumes, in the same folder
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert (first, state["global_step"]) == (2, 4)
    assert sorted(p.name for p in run.parent.iterdir()) == ["slurm-1000_5"]
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()


def test_run_name_slurm_outside_slurm_is_one_line(lab, workdir, monkeypatch, capsys):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, "--run_name", "slurm")
    assert stopped.value.code == 2
    assert "lab: error: --run_name slurm: SLURM_JOB_ID is not set" in capsys.readouterr().err
