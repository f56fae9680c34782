"""Where runs are: the one place that turns what a user names (a run folder, an
experiment name, a folder holding runs) into run folders, for ``lab report``,
``lab summary`` and ``lab compare``.

A run folder holds ``metrics.csv`` or ``config.yaml``; an experiment name or folder
stands for its newest ``version_N``; any other folder for every run found below it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runs.layout import latest_run, versions


def is_run_dir(path: Path) -> bool:
    """A run folder holds ``metrics.csv`` or ``config.yaml`` (a run that died early may
    lack one of them)."""
    return (path / "metrics.csv").is_file() or (path / "config.yaml").is_file()


def _natural_key(path: Path) -> list[list[Any]]:
    """Sort by path parts, ``version_2`` before ``version_10``."""
    return [[int(p) if p.isdigit() else p for p in re.split(r"(\d+)", part)] for part in path.parts]


def runs_below(folder: Path, skip: Path | None = None) -> list[Path]:
    """Every run folder below ``folder`` (itself included), in natural path order; the
    folders of a run (``checkpoints/``, ...) and ``skip`` are not searched."""
    found = []
    skip_resolved = skip.resolve() if skip is not None else None
    for current, dirs, _ in os.walk(folder):
        here = Path(current)
        if skip_resolved is not None and here.resolve() == skip_resolved:
            dirs[:] = []
            continue
        if is_run_dir(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found, key=_natural_key)


def find_runs(targets: Sequence[str], root: Path, skip: Path | None = None) -> list[Path]:
    """The run folders a report covers: see the module docstring. ``skip``: a folder not
    to search (the report's own output)."""
    if not targets:
        if not root.is_dir():
            raise LabError(
                f"no runs found under {root}: the log root does not exist; run `lab fit` "
                "first, or give --log_root or run folders"
            )
        targets_paths = [root]
    else:
        targets_paths = []
        for target in targets:
            path = Path(target)
            if not path.is_dir() and (root / target).is_dir():
                path = root / target
            if not path.is_dir():
                raise LabError(
                    f"no run of {target!r}: it is neither a folder nor an experiment under "
                    f"{root}; give run folders, experiment names or folders holding runs"
                )
            targets_paths.append(path)
    runs: list[Path] = []
    for path in targets_paths:
        if is_run_dir(path):
            found = [path]
        elif versions(path):
            found = [latest_run(path)]
        else:
            found = runs_below(path, skip)
        if not found:
            raise LabError(
                f"no runs found under {path}: expected run folders holding metrics.csv or "
                "config.yaml (made by `lab fit`); check the path or --log_root"
            )
        runs.extend(found)
    unique, seen = [], set()
    for run in runs:  # a run named twice is reported once, where first named
        if run.resolve() not in seen:
            seen.add(run.resolve())
            unique.append(run)
    return unique


def run_ids(runs: Sequence[Path], root: Path) -> list[str]:
    """Names of runs: their paths relative to the log root when all are below it, else
    relative to their common parent (at least ``<experiment>/version_N``)."""
    resolved = [run.resolve() for run in runs]
    base = root.resolve()
    if not all(run.is_relative_to(base) and run != base for run in resolved):
        base = Path(os.path.commonpath([run.parent.parent for run in resolved]))
    ids = [run.relative_to(base).as_posix() for run in resolved]
    return [run_id or run.name for run_id, run in zip(ids, resolved, strict=True)]


def resolve_run(target: str, root: Path) -> Path:
    """The one run a name stands for: a run folder, or the newest version of an
    experiment (a name under ``root`` or its folder). A folder holding several runs is
    refused: name one of them."""
    found = find_runs([target], root)
    if len(found) != 1:
        raise LabError(f"{target!r} holds {len(found)} runs; name one run folder or an experiment")
    return found[0]
