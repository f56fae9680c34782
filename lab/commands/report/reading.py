"""Reading one run folder for ``lab report``: its metrics, ``run.json`` and
``config.yaml``, however far they go (a run that died half-way is reported as far as its
files go, and what is missing is noted)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lab.runs.metrics import headline
from lab.runs.predictions import run_intervals


@dataclass
class Run:
    """What could be read of one run folder, and what could not."""

    path: Path
    id: str
    metrics: pd.DataFrame | None = None
    config: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # short: the status column
    notes: list[str] = field(default_factory=list)  # one sentence each: the Notes list
    intervals: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``complete``, or what is missing, e.g. ``no test`` or ``no metrics, no run.json``."""
        return ", ".join(self.problems) if self.problems else "complete"

    def problem(self, short: str, note: str) -> None:
        """Record something missing or broken."""
        self.problems.append(short)
        self.notes.append(note)


def read_metrics(run: Run) -> None:
    """Load ``metrics.csv`` into ``run.metrics`` (without a last row cut off inside);
    record what is wrong with it."""
    path = run.path / "metrics.csv"
    if not path.is_file():
        run.problem(
            "no metrics",
            "no metrics.csv (the run stopped before logging an epoch, or it was removed)",
        )
        return
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        run.problem("no metrics", f"metrics.csv cannot be read ({error})")
        return
    if text.strip() and not text.endswith("\n"):
        lines = text.splitlines(keepends=True)
        text = "".join(lines[:-1])
        if len(lines) > 1:
            run.notes.append("metrics.csv ends inside a row (truncated): that row is left out")
            run.problems.append("truncated metrics")
    if not text.strip():
        run.problem("no metrics", "metrics.csv is empty (or cut off inside its header)")
        return
    try:
        metrics = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        message = str(error).strip().splitlines()[0]
        run.problem("no metrics", f"metrics.csv does not parse ({message})")
        return
    if metrics.empty:
        run.problem("no metrics", "metrics.csv has a header but no rows")
        return
    run.metrics = metrics


# The run files that hold a mapping: how to parse each, what it must hold, and the run's
# problem (kind, text) when it is missing and (kind) when it does not parse.
_MAPPING_FILES: dict[str, tuple[Callable[[str], Any], str, tuple[str, str], str]] = {
    "run.json": (
        json.loads,
        "a JSON object",
        ("no run.json", "no run.json: the fit did not finish (no wall times)"),
        "bad run.json",
    ),
    "config.yaml": (
        yaml.safe_load,
        "a mapping of keys to values",
        ("no config", "no config.yaml: its settings are unknown"),
        "bad config",
    ),
}


def _read_mapping(run: Run, name: str) -> dict[str, Any] | None:
    """Parse the run file ``name`` (one of :data:`_MAPPING_FILES`): the mapping, or None
    for a missing or broken file (recorded on ``run``)."""
    parse, expected, missing, bad = _MAPPING_FILES[name]
    path = run.path / name
    if not path.is_file():
        run.problem(*missing)
        return None
    try:
        value = parse(path.read_text())
        if not isinstance(value, dict):
            raise ValueError(f"not {expected}")
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        message = " ".join(str(error).split())
        run.problem(bad, f"{name} does not parse ({message})")
        return None
    return value


def read_info(run: Run) -> None:
    """Load ``run.json`` into ``run.info``; record a missing or broken one."""
    info = _read_mapping(run, "run.json")
    run.info = info if info is not None else run.info


def read_config(run: Run) -> None:
    """Load ``config.yaml`` into ``run.config``; record a missing or broken one."""
    config = _read_mapping(run, "config.yaml")
    run.config = config if config is not None else run.config


def _headline(run: Run) -> dict[str, Any]:
    """The headline numbers of what could be read of the run (``lab.runs.metrics.headline``);
    without run.json's figures when they are odd values."""
    try:
        return headline(run.metrics, run.info)
    except (ValueError, TypeError):  # e.g. a run.json whose numbers are not numbers
        return headline(run.metrics, {})


def load_run(path: Path, run_id: str) -> Run:
    """Everything the report shows of one run folder, however far its files go."""
    run = Run(path=Path(path), id=run_id)
    read_metrics(run)
    read_info(run)
    read_config(run)
    if run.metrics is not None:
        values = _headline(run)
        has_test = any(c.startswith("test/") and run.metrics[c].notna().any() for c in run.metrics)
        if not has_test:
            run.problem(
                "no test",
                "no test metrics: run `lab test --config <its config> --ckpt_path last`",
            )
    else:
        values = {}
        if "epochs_completed" in run.info:
            values["epochs"] = int(run.info["epochs_completed"])
    seconds = run.info.get("seconds", {}) if isinstance(run.info.get("seconds"), dict) else {}
    for stage in ("fit", "test"):
        if isinstance(seconds.get(stage), (int, float)) and f"{stage} seconds" not in values:
            values[f"{stage} seconds"] = round(float(seconds[stage]), 1)
    run.values = values
    run.intervals = run_intervals(run.path)
    return run
