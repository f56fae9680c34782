"""Tests of ``lab.data``: the contract every data module passes, and each format's own checks."""

from __future__ import annotations

from pathlib import Path

import torch

from lab.data import LabDataModule
from tests.helpers import short_fit

# A fit short enough for a test that still trains, validates and saves its last.ckpt
# (``fast_dev_run`` saves nothing to check). The demo's callbacks are left out.
SHORT_FIT = short_fit(1, 2, 1, "--trainer.callbacks=[]")


def set_up(module: type[LabDataModule], root: Path, **kwargs: object) -> LabDataModule:
    """``module`` on the fixture under ``root`` (not verified, not normalised), set up."""
    options = {"root": str(root), "verify": False, "normalization": "none"}
    dm = module(**{**options, **kwargs})
    dm.setup()
    return dm


def last_checkpoint(workdir: Path, experiment: str) -> dict:
    """The ``last.ckpt`` of the one run of ``experiment`` under ``workdir/lightning_logs``."""
    (path,) = (workdir / "lightning_logs" / experiment).glob("*/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=False)
