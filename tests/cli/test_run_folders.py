"""Run folders of ``lab fit``: two loggers made before either writes get two folders,
``--run_name slurm`` puts a job in ``slurm-<job>_<task>``, where a requeue resumes it, and
metrics.csv and config.yaml are replaced whole or not at all."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest
import torch
from lightning.pytorch.utilities import rank_zero_only

from lab.cli import LabArgumentParser
from lab.cli.loggers import AppendingCSVLogger, CurvesTensorBoardLogger
from lab.errors import WriteError
from tests.conftest import REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
SHORT = short_fit(1, 2, 1, "--trainer.callbacks=[]")


def test_loggers_made_before_either_writes_get_different_folders(tmp_path):
    first, second = (CurvesTensorBoardLogger(tmp_path, name="demo") for _ in range(2))
    # Lightning's listing gave both version_0: neither had written anything yet.
    assert (first.version, second.version) == (0, 1)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["version_0", "version_1"]


def test_a_fast_dev_run_claims_no_folder_and_a_fit_one_for_both_loggers(lab, workdir):
    lab("fit", "--config", DEMO, "--trainer.fast_dev_run=true")  # its loggers never write
    assert not (workdir / "lightning_logs" / "demo").exists()
    lab("fit", "--config", DEMO, *SHORT)
    run = workdir / "lightning_logs" / "demo" / "version_0"
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents.*"))


def test_other_ddp_ranks_take_rank_0s_folder_and_create_none(tmp_path, monkeypatch):
    (tmp_path / "demo" / "version_4").mkdir(parents=True)  # rank 0 claimed it
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert CurvesTensorBoardLogger(tmp_path, name="demo").version == 4
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["version_4"]


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


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_metrics_csv_gains_columns_and_a_failed_save_keeps_the_table(tmp_path, monkeypatch):
    logger = AppendingCSVLogger(tmp_path, name="demo", version=0)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    logger.log_metrics({"val/acc": 0.5}, step=1)  # a new column: the table is rewritten
    logger.save()
    path = tmp_path / "demo" / "version_0" / "metrics.csv"
    table = pd.read_csv(path)
    assert table["train/loss"].tolist()[0] == 1.0 and table["val/acc"].tolist()[1] == 0.5
    before = path.read_bytes()
    logger.log_metrics({"train/loss": 0.5}, step=2)
    monkeypatch.setattr(os, "replace", _full_disk)
    with pytest.raises(WriteError, match=r"^no space left on device while writing .*metrics.csv"):
        logger.save()
    assert path.read_bytes() == before and os.listdir(path.parent) == ["metrics.csv"]


def test_config_yaml_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    parser = LabArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    path = tmp_path / "config.yaml"
    parser.save(parser.parse_args(["--lr", "0.5"]), path, skip_none=False, multifile=False)
    assert path.read_text() == "lr: 0.5\n"
    with pytest.raises(ValueError, match="Refusing to overwrite"):
        parser.save(parser.parse_args([]), path, multifile=False)
    monkeypatch.setattr(os, "replace", _full_disk)
    with pytest.raises(WriteError):
        parser.save(parser.parse_args([]), path, overwrite=True, multifile=False)
    assert path.read_text() == "lr: 0.5\n" and os.listdir(tmp_path) == ["config.yaml"]
