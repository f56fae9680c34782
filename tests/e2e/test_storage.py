"""A full disk or a read-only log root during `lab fit`: one line, a non-zero exit, the
last good checkpoint named and intact, nothing half-written, and the run resumes (faults
injected, no disk filled: tests/faults.py)."""

from __future__ import annotations

import errno
import json
import os
import re

import pandas as pd
import pytest
import torch

from tests.conftest import REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
# 2 epochs of 4 steps; the epoch-end checkpoints at steps 4 and 8.
SHORT = short_fit(2, 4, 1, "--trainer.log_every_n_steps=1", "--data.init_args.batch_size=16")


def test_a_full_disk_is_one_line_naming_the_file_and_the_last_good_checkpoint(
    lab, workdir, capsys, recwarn
):
    fault = {"class_path": "tests.faults.FullDiskAt", "init_args": {"step": 5}}
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, "--trainer.callbacks+=" + json.dumps(fault))
    assert stopped.value.code == 2
    run = workdir / "lightning_logs" / "demo" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    err = capsys.readouterr().err
    assert not [w for w in recwarn if "could not" in str(w.message)]  # no second try
    line = err.strip().splitlines()[-1]
    relative = re.escape(str(last.relative_to(workdir)))  # Lightning's paths: from the cwd
    assert re.fullmatch(
        rf"lab: no space left on device while writing {relative} \(\d+ MB free\): "
        rf"free space or set --log_root; the last good checkpoint is {relative}",
        line,
    ), line
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 4  # epoch 0's, intact: epoch 1's write failed
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert pd.read_csv(run / "metrics.csv")["val/acc"].notna().sum() >= 1  # whole rows
    # Space freed, the run resumed as the line says; a temporary file that a write killed
    # by SIGKILL would have left (tests/test_io.py kills one) is removed by the resume.
    (run / "checkpoints" / ".last.ckpt.k1ll3d.tmp").write_bytes(b"half")
    lab("fit", "--config", DEMO, *SHORT, "--ckpt_path", "last")
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 8
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_a_read_only_log_root_is_one_line_and_writes_nothing(lab, workdir, capsys, monkeypatch):
    root = workdir / "shared_logs"
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # as a read-only mount (chmod: tests run as root)
        if str(path).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, "--log_root", str(root))
    assert stopped.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"lab: read-only file system while writing {re.escape(str(root))}\S* \(\d+ MB free\): "
        r"make the folder writable or set --log_root",
        line,
    ), line
    assert not root.exists()
