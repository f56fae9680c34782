"""The report's tables: the settings that differ between runs, and the metrics with
their 95% intervals (see :mod:`lab.runs.predictions`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.commands.report.reading import MAIN_COLUMNS, OPTIONAL_COLUMNS, Run

# Config keys that are not settings of the experiment: names, paths, logging, callbacks.
_IGNORED_KEYS = {
    "config",
    "experiment",
    "log_root",
    "ckpt_path",
    "model.class_path",  # the task column
    "trainer.callbacks",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
}
_PATH_SUFFIXES = ("root", "_dir", "dirpath", "_path", "_file", "filename")
_ALWAYS = ("trainer.max_epochs",)  # plus the optimizer's learning rate


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _ignored(key: str) -> bool:
    if any(key == k or key.startswith(f"{k}.") for k in _IGNORED_KEYS):
        return True
    last = key.rsplit(".", 1)[-1]
    return last != "class_path" and last.endswith(_PATH_SUFFIXES)


def _is_lr(key: str) -> bool:
    parts = [p for p in key.split(".") if p != "init_args"]
    return len(parts) >= 2 and parts[-1] == "lr" and parts[-2] == "optimizer"


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def setting_names(keys: Sequence[str]) -> dict[str, str]:
    """Readable column names for config keys: the shortest tail of the key (``init_args``
    left out) that no other key shares, e.g. ``lr``, ``center_weight``, ``data.seed``;
    ``...backbone.class_path`` is ``backbone``."""

    def parts(key: str) -> list[str]:
        kept = [p for p in key.split(".") if p != "init_args"]
        if len(kept) > 1 and kept[-1] == "class_path":
            kept = kept[:-1]
        return kept

    split = {key: parts(key) for key in keys}
    names = {}
    for key, own in split.items():
        for n in range(1, len(own) + 1):
            tail = own[-n:]
            if all(other[-n:] != tail for k, other in split.items() if k != key):
                break
        names[key] = ".".join(tail)
    return names


def differing_settings(configs: Sequence[dict[str, Any] | None]) -> list[str]:
    """Config keys to show: those whose values differ between the runs that have a
    config (names, paths, logging and callbacks left out), plus the optimizer's learning
    rate and ``trainer.max_epochs`` always."""
    flats = [flatten(c) for c in configs if c is not None]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    always = [k for k in keys if _is_lr(k)] + [k for k in _ALWAYS if k in keys]
    differ = [
        key
        for key in keys
        if key not in always
        and not _ignored(key)
        and len({_comparable(flat.get(key, "<unset>")) for flat in flats}) > 1
    ]
    return always + differ


def _display(key: str, value: Any) -> Any:
    if key.endswith("class_path") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def results_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: ``run``, ``experiment``, ``task``, ``status``, the settings that
    differ, then the test metrics, best val/acc, epochs and fit seconds."""
    keys = differing_settings([run.config for run in runs])
    reserved = {"run", "experiment", "task", "status", *MAIN_COLUMNS, *OPTIONAL_COLUMNS}
    names = {k: k if n in reserved else n for k, n in setting_names(keys).items()}
    rows = []
    for run in runs:
        config = run.config or {}
        flat = flatten(config)
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        task = str(model.get("class_path", "")).rsplit(".", 1)[-1] or None
        experiment = config.get("experiment") or (
            run.path.parent.name if run.path.name.startswith("version_") else run.path.name
        )
        row: dict[str, Any] = {
            "run": run.id,
            "experiment": experiment,
            "task": task,
            "status": run.status,
        }
        for key in keys:  # blank where the run has no config or no such key
            row[names[key]] = _display(key, flat[key]) if key in flat else None
        for column in MAIN_COLUMNS:
            row[column] = run.values.get(column)
            _add_interval(row, column, run, runs)
        for column in OPTIONAL_COLUMNS:
            if any(column in r.values for r in runs):
                row[column] = run.values.get(column)
                _add_interval(row, column, run, runs)
        rows.append(row)
    return pd.DataFrame(rows)


def _add_interval(row: dict[str, Any], column: str, run: Run, runs: Sequence[Run]) -> None:
    """``<metric> low`` and ``<metric> high`` after a metric that any run has an interval
    of (blank for the runs without one)."""
    if any(column in r.intervals for r in runs):
        _, low, high = run.intervals.get(column, (None, None, None))
        row[f"{column} low"], row[f"{column} high"] = low, high


def _is_bound(column: str) -> bool:
    return column.endswith((" low", " high"))


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a :func:`results_table` that hold measured numbers (not bounds)."""
    measured = {*MAIN_COLUMNS, *OPTIONAL_COLUMNS}
    return [c for c in table.columns if c in measured]


def _format_cell(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("epochs", "trainable params"):
        return f"{int(value):,}" if column == "trainable params" else str(int(value))
    if column.endswith("seconds"):
        return f"{float(value):.1f}"
    if column.startswith(("test/", "before/", "best ")):
        return f"{float(value):.4f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _with_interval(column: str, value: Any, low: Any, high: Any) -> str:
    text = _format_cell(column, value)
    if text and all(isinstance(b, (int, float)) and math.isfinite(b) for b in (low, high)):
        text += f" [{float(low):.4f}, {float(high):.4f}]"
    return text


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of strings: metrics to 4 decimals with their 95% interval in
    brackets where there is one, settings as written."""
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        if _is_bound(column):
            continue
        if f"{column} low" in table:
            shown[column] = [
                _with_interval(column, v, lo, hi)
                for v, lo, hi in zip(
                    table[column], table[f"{column} low"], table[f"{column} high"], strict=True
                )
            ]
        else:
            shown[column] = [_format_cell(column, v) for v in table[column]]
    return shown.to_markdown(index=False, disable_numparse=True)


def settings_markdown(table: pd.DataFrame) -> str:
    """The Settings table of a :func:`results_table`: run, experiment, task, status and the
    settings that differ."""
    measured = {*metric_columns(table)}
    keep = [c for c in table.columns if c not in measured and not _is_bound(c)]
    return to_markdown(table[keep])


def metrics_markdown(table: pd.DataFrame) -> str:
    """The Metrics table of a :func:`results_table`: run, then each metric with its
    interval."""
    keep = ["run", *(c for c in table.columns if c in metric_columns(table) or _is_bound(c))]
    return to_markdown(table[keep])
