"""The headline metrics of a run: one registry of them, the one way a table shows them,
and ``summarize`` (a run folder's headline numbers).

:data:`METRICS` names every number a table of runs shows: its key (the ``metrics.csv``
column of a logged one, else the name ``summarize`` gives it), its ``results/runs.csv``
column, its kind (how a cell writes it) and whether it has a 95% interval
(``intervals.csv``). ``lab summary``, ``lab report``, the sweep tables and ``lab record``
read it; :func:`format_cell` and :func:`format_table` write every cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from lab.errors import LabError
from lab.runs.layout import read_run_info

Kind = Literal["share", "score", "count", "seconds"]


@dataclass(frozen=True)
class Metric:
    """One headline metric.

    Attributes:
        name: its key in ``summarize``'s row; for a ``logged`` one, the ``metrics.csv``
            column whose last value it is.
        kind: ``share`` (a fraction of images: 4 decimals, or a percentage in prose),
            ``score`` (4 decimals), ``count`` (an integer) or ``seconds``.
        label: what the README's tables call it.
        logged: read from ``metrics.csv`` as is (else ``summarize`` derives it).
        record: its column in ``results/runs.csv`` (None: not recorded).
        report: ``always`` in ``lab report``'s table, ``when any`` run has it, or ``never``.
        interval: ``intervals.csv`` may hold its 95% interval.
        seeds: a seeded sweep averages it over the seeds.
    """

    name: str
    kind: Kind
    label: str
    logged: bool = False
    record: str | None = None
    report: Literal["always", "when any", "never"] = "when any"
    interval: bool = False
    seeds: bool = False


# In the order every table shows them.
METRICS = (
    # The test split before fine-tuning (lab.callbacks.BeforeFitEvaluation).
    Metric("before/acc", "share", "top-1 before fine-tuning", logged=True),
    Metric(
        "test/acc", "share", "test top-1", logged=True, record="test_acc", report="always",
        interval=True, seeds=True,
    ),
    Metric("test/acc_top5", "share", "top-5", logged=True, report="always", seeds=True),
    Metric("test/knn_acc", "share", "kNN", logged=True, record="knn_acc", seeds=True),
    Metric("test/precision_at_1", "share", "precision@1", logged=True, record="precision_at_1"),
    Metric("test/map_at_r", "score", "MAP@R", logged=True, record="map_at_r", seeds=True),
    Metric("test/macro_f1", "score", "macro F1", logged=True, interval=True, seeds=True),
    Metric("test/auc_macro", "score", "macro AUC", logged=True, interval=True),
    Metric("test/loss", "score", "test loss", logged=True, report="never"),
    Metric(
        "best val/acc", "share", "best val top-1", record="best_val_acc", report="always",
        seeds=True,
    ),
    Metric("epochs", "count", "epochs", record="epochs", report="always"),
    Metric("trainable params", "count", "trainable parameters"),
    Metric("fit seconds", "seconds", "fit wall time", record="fit_seconds", report="always"),
    Metric("test seconds", "seconds", "test wall time", report="never"),
)  # fmt: skip
BY_NAME: Mapping[str, Metric] = {metric.name: metric for metric in METRICS}
RECORDED = tuple(metric for metric in METRICS if metric.record)
SEED_METRICS = tuple(metric.name for metric in METRICS if metric.seeds)


def is_metric(name: str) -> bool:
    """Whether ``name`` is a registered headline metric."""
    return name in BY_NAME


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or another non-scalar
        return False


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not _missing(v) and math.isfinite(v) for v in values)


def format_cell(
    name: str, value: Any, low: Any = None, high: Any = None, prose: bool = False
) -> str:
    """The cell of metric ``name``: shares and scores to 4 decimals with their 95% interval
    ``[low, high]`` when both bounds are known, counts as integers (``1,234``), seconds
    to 0.1 s; blank when the value is missing. ``prose``: as the README's tables and
    ``lab compare`` write it, a share as a percentage (``98.89% [97.1, 99.6]``) and
    seconds with their unit. A name that is not registered is written as a score."""
    if _missing(value):
        return ""
    metric = BY_NAME.get(name)
    kind = metric.kind if metric is not None else "score"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "seconds":
        return f"{float(value):.1f}" + (" s" if prose else "")
    bounds = (float(low), float(high)) if _finite(low, high) else None
    if prose and kind == "share":
        text = f"{100 * float(value):.2f}%"
        return text + (f" [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]" if bounds else "")
    text = f"{float(value):.4f}"
    return text + (f" [{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else "")


def _plain(column: str, value: Any) -> str:
    """A cell that is not a metric: as written, a float in its shortest form."""
    if _missing(value):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def is_bound(column: str) -> bool:
    """Whether ``column`` is the ``<metric> low`` / ``<metric> high`` bound of an interval."""
    return column.endswith((" low", " high"))


def format_table(table: pd.DataFrame, other: Callable[[str, Any], str] = _plain) -> pd.DataFrame:
    """``table`` as strings: each metric column by :func:`format_cell`, with the
    ``<metric> low`` / ``<metric> high`` columns that follow it folded into its cells;
    other columns by ``other(column, value)`` (default: as written)."""
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        if is_bound(column) and column.rsplit(" ", 1)[0] in table:
            continue
        if is_metric(column) or f"{column} low" in table:
            low = table.get(f"{column} low", pd.Series(None, index=table.index))
            high = table.get(f"{column} high", pd.Series(None, index=table.index))
            shown[column] = [
                format_cell(column, v, lo, hi)
                for v, lo, hi in zip(table[column], low, high, strict=True)
            ]
        else:
            shown[column] = [other(column, v) for v in table[column]]
    return shown


def headline(metrics: pd.DataFrame, info: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of a run's logged ``metrics`` and its ``run.json`` ``info``: the
    last value of each logged metric, the best val accuracy, epochs, trainable
    parameters and wall times (those it has), in the order of :data:`METRICS`."""
    found: dict[str, Any] = {}
    # Epochs of training: a test after fit (--then_test) logs at epoch == max_epochs.
    stages = [c for c in metrics.columns if c.startswith(("train/", "val/"))]
    fitted = metrics[metrics[stages].notna().any(axis=1)] if stages else metrics
    if "epoch" in fitted and fitted["epoch"].notna().any():
        found["epochs"] = int(fitted["epoch"].max()) + 1
    if "val/acc" in metrics and metrics["val/acc"].notna().any():
        found["best val/acc"] = float(metrics["val/acc"].max())
    for metric in METRICS:
        column = metric.name
        if metric.logged and column in metrics and metrics[column].notna().any():
            found[column] = float(metrics[column].dropna().iloc[-1])
    parameters = info.get("parameters", {})
    trainable = parameters.get("trainable") if isinstance(parameters, Mapping) else None
    if trainable is not None:
        found["trainable params"] = int(trainable)
    seconds = info.get("seconds", {})
    for stage in ("fit", "test"):
        if isinstance(seconds, Mapping) and stage in seconds:
            found[f"{stage} seconds"] = round(float(seconds[stage]), 1)
    return {name: found[name] for name in BY_NAME if name in found}


def summarize(run_dir: Path) -> dict[str, Any]:
    """Headline numbers of one run folder (:func:`headline` of its ``metrics.csv`` and
    ``run.json``), after its ``run``."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise LabError(f"{run_dir} has no metrics.csv; is it a run folder of `lab fit`?")
    return {"run": str(run_dir), **headline(pd.read_csv(metrics_file), read_run_info(run_dir))}
