"""The layout of run folders: ``<log root>/<experiment>/version_N/``, and what is in them.

A run folder is ``version_N`` (the next free N, claimed with an atomic ``mkdir`` so that
launches in the same second each get their own) or, with ``--run_name slurm``,
``slurm-<job>_<task>`` (a requeued job finds its own folder again).

Each run folder holds TensorBoard events, ``metrics.csv``, the resolved ``config.yaml``,
``run.json`` (versions, seed, wall times) and ``checkpoints/`` (``last.ckpt`` and the
best one). Knowing this layout in one place lets the CLI resume the right run and the
summary read the right files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.errors import LabError, writing

_VERSION = re.compile(r"^version_(\d+)$")
_RUN = re.compile(r"^(version_\d+|slurm-\d+(_\d+)?)$")
RUN_NAMES = ("version", "slurm")


def log_root(root: str | os.PathLike | None = None) -> Path:
    """Where runs go: ``root`` if given, else ``$LAB_LOGS``, else ``lightning_logs/``."""
    return Path(root if root is not None else os.environ.get("LAB_LOGS", "lightning_logs"))


def versions(experiment_dir: Path) -> list[tuple[int, Path]]:
    """``(N, folder)`` for every ``version_N`` folder of an experiment, oldest first."""
    if not experiment_dir.is_dir():
        return []
    found = []
    for child in experiment_dir.iterdir():
        match = _VERSION.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def is_run_name(name: str) -> bool:
    """``version_N`` or ``slurm-<job>[_<task>]``: the name of a run folder."""
    return _RUN.match(name) is not None


def claim_run_dir(experiment_dir: Path) -> Path:
    """A fresh ``version_N`` folder of an experiment, created here: ``os.mkdir`` either
    makes the folder or fails because another launch made it first, and then the next
    number is tried, so N launches in the same second get N folders."""
    with writing(experiment_dir):
        experiment_dir.mkdir(parents=True, exist_ok=True)
        found = versions(experiment_dir)
        number = found[-1][0] + 1 if found else 0
        while True:
            folder = experiment_dir / f"version_{number}"
            try:
                os.mkdir(folder)
                return folder
            except FileExistsError:  # another run took it meanwhile
                number += 1


def make_run_dir(folder: Path) -> Path:
    """A run folder named in advance (``--run_name slurm``), created if new."""
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def slurm_run_name(environ: Mapping[str, str] | None = None) -> str:
    """``slurm-<job>_<task>`` of a SLURM array task (``slurm-<job>`` of a plain job): the
    same after a requeue, so the job finds its own run folder again."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if not job:
        raise LabError(
            "--run_name slurm: SLURM_JOB_ID is not set (this is not a SLURM job); "
            "leave --run_name out to number runs version_N"
        )
    task = env.get("SLURM_ARRAY_TASK_ID")
    return f"slurm-{job}_{task}" if task else f"slurm-{job}"


def latest_run(experiment_dir: Path, with_checkpoint: bool = False) -> Path | None:
    """The newest ``version_N`` folder (that has ``checkpoints/last.ckpt``, if asked)."""
    for _, folder in reversed(versions(experiment_dir)):
        if not with_checkpoint or (folder / "checkpoints" / "last.ckpt").is_file():
            return folder
    return None


# A backbone's ``weights: last:<experiment>``: that experiment's newest last.ckpt.
LATEST_PREFIX = "last:"


def latest_checkpoint(reference: str, root: Path) -> Path:
    """``last:<experiment>``: ``checkpoints/last.ckpt`` of the newest run of that experiment
    under ``root`` that has one."""
    experiment = reference.removeprefix(LATEST_PREFIX)
    run = latest_run(Path(root) / experiment, with_checkpoint=True)
    if run is None:
        raise LabError(
            f"weights {reference}: no run of {experiment} with checkpoints/last.ckpt under "
            f"{root}; train it first (make {experiment})"
        )
    return run / "checkpoints" / "last.ckpt"


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``.../version_N/checkpoints/x.ckpt``, or a
    ``slurm-<job>_<task>`` folder), if any."""
    ckpt = Path(ckpt)
    if ckpt.parent.name == "checkpoints" and is_run_name(ckpt.parent.parent.name):
        return ckpt.parent.parent
    return None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder ({} if it has none)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}
