"""The report's tables: the settings that differ between runs, and the metrics with
their 95% intervals (see :mod:`lab.runs.predictions`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.commands.report.reading import Run
from lab.runs.layout import is_run_name
from lab.runs.metrics import METRICS, format_table, is_bound, is_metric
from lab.runs.objective import config_objective

# Config keys that are not settings of the experiment: names, paths, logging, callbacks.
_IGNORED_KEYS = {
    "config",
    "experiment",
    "log_root",
    "ckpt_path",
    "model.class_path",  # the task column
    "model.init_args.losses",  # the objective column, in words
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
    """One row per run: ``run``, ``experiment``, ``task``, ``objective`` (in words,
    :mod:`lab.runs.objective`), ``status``, the settings that differ, then the metrics of
    :mod:`lab.runs.metrics` the report shows."""
    keys = differing_settings([run.config for run in runs])
    reserved = {"run", "experiment", "task", "objective", "status", *(m.name for m in METRICS)}
    names = {k: k if n in reserved else n for k, n in setting_names(keys).items()}
    rows = []
    for run in runs:
        config = run.config or {}
        flat = flatten(config)
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        task = str(model.get("class_path", "")).rsplit(".", 1)[-1] or None
        experiment = config.get("experiment") or (
            run.path.parent.name if is_run_name(run.path.name) else run.path.name
        )
        row: dict[str, Any] = {
            "run": run.id,
            "experiment": experiment,
            "task": task,
            "objective": config_objective(config),
            "status": run.status,
        }
        for key in keys:  # blank where the run has no config or no such key
            row[names[key]] = _display(key, flat[key]) if key in flat else None
        for metric in METRICS:  # lab.runs.metrics: which the report shows
            shown = metric.report == "always" or (
                metric.report == "when any" and any(metric.name in r.values for r in runs)
            )
            if shown:
                row[metric.name] = run.values.get(metric.name)
                _add_interval(row, metric.name, run, runs)
        rows.append(row)
    return pd.DataFrame(rows)


def _add_interval(row: dict[str, Any], column: str, run: Run, runs: Sequence[Run]) -> None:
    """``<metric> low`` and ``<metric> high`` after a metric that any run has an interval
    of (blank for the runs without one)."""
    if any(column in r.intervals for r in runs):
        _, low, high = run.intervals.get(column, (None, None, None))
        row[f"{column} low"], row[f"{column} high"] = low, high


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a :func:`results_table` that hold measured numbers (not bounds)."""
    return [c for c in table.columns if is_metric(c)]


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of strings: metrics as :func:`lab.runs.metrics.format_cell` writes
    them (their 95% interval in brackets where there is one), settings as written."""
    shown = format_table(table)
    return shown.to_markdown(index=False, disable_numparse=True)


def settings_markdown(table: pd.DataFrame) -> str:
    """The Settings table of a :func:`results_table`: run, experiment, task, objective,
    status and the settings that differ."""
    measured = {*metric_columns(table)}
    keep = [c for c in table.columns if c not in measured and not is_bound(c)]
    return to_markdown(table[keep])


def metrics_markdown(table: pd.DataFrame) -> str:
    """The Metrics table of a :func:`results_table`: run, then each metric with its
    interval."""
    keep = ["run", *(c for c in table.columns if c in metric_columns(table) or is_bound(c))]
    return to_markdown(table[keep])
