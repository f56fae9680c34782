"""Records what a run needs to be trusted and repeated: versions, seed, commit, wall time."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from lab.callbacks.figures import run_dir as run_folder
from lab.io import atomic_write_text
from lab.models.freeze import count_parameters
from lab.runs.layout import read_run_info

_PACKAGES = ("lab", "torch", "torchvision", "lightning", "torchmetrics", "scikit-learn", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    import torch

    found["torch"] = torch.__version__  # with the build tag, e.g. +cu130 or +cpu
    found["cuda"] = torch.version.cuda or "none"
    return found


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The commit of the working tree and whether it had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        # results/ holds the records themselves: a row added there changes no code.
        changes = git("status", "--porcelain", "--", ":(top)", ":(top,exclude)results")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changes)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


class RunRecord(L.Callback):
    """Writes ``run.json`` in the run folder and adds each stage's wall time to it.

    Times add up over resumed runs: ``seconds.fit`` is the total time spent fitting.
    ``status`` says how each stage last ended: ``finished`` or ``stopped: <why>`` (an
    interruption, a divergence, a crash).
    """

    def __init__(self, command: str | None = None) -> None:
        self.command = command if command is not None else " ".join(["lab", *sys.argv[1:]])
        self._started: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._started[stage] = time.perf_counter()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        started = self._started.pop(stage, None)
        if started is not None and not trainer.sanity_checking:
            self._write(trainer, pl_module, stage, time.perf_counter() - started, "finished")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Lightning skips teardown when a stage raises: record the time and what happened.
        stage = str(getattr(trainer.state.fn, "value", trainer.state.fn))
        started = self._started.pop(stage, None)
        if started is not None:
            status = f"stopped: {type(exception).__name__}: {exception}".rstrip(": ")
            self._write(trainer, pl_module, stage, time.perf_counter() - started, status)

    @rank_zero_only
    def _write(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        stage: str,
        seconds: float,
        status: str,
    ) -> None:
        run_dir = run_folder(trainer)
        if trainer.fast_dev_run or run_dir is None:
            return
        info = read_run_info(run_dir)
        info.update(
            versions=package_versions(),
            git=git_state(),
            seed=int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            host=platform.node(),
            accelerator=type(trainer.accelerator).__name__,
            devices=trainer.num_devices,
            precision=str(trainer.precision),
            parameters=count_parameters(pl_module),
        )
        info.setdefault("commands", []).append(self.command)
        info.setdefault("status", {})[stage] = status[:500]
        totals = info.setdefault("seconds", {})
        totals[stage] = round(totals.get(stage, 0.0) + seconds, 3)
        if stage == "fit":
            info["epochs_completed"] = trainer.current_epoch
            info["global_step"] = trainer.global_step
        atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
