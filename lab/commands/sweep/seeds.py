"""A sweep's table and plot: each setting over several seeds (``lab sweep --seeds N``)
summarised as mean, standard deviation and n per metric, ranked by the mean; the plot
of the swept key against the metrics, with error bars over the seeds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.plots import closing_figure, pyplot, save_figure_atomically
from lab.runs.metrics import format_cell


def aggregate_seeds(
    runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], rank_by: str
) -> pd.DataFrame:
    """One row per setting (in the order of its first run) from one row per run: the
    setting's ``keys``, ``n`` (runs that finished), ``status`` (``ok`` when every seed
    did, else ``k/n failed``), and for each metric its mean (column ``<metric>``), sample
    standard deviation (``<metric> std``, NaN with one run) and ``<metric> ± std`` as
    text; ``rank``: 1 for the highest mean of ``rank_by``."""
    keys = [k for k in keys if k in runs]
    metrics = [m for m in metrics if m in runs]
    label = runs[keys].astype(str).agg(" | ".join, axis=1) if keys else pd.Series("", runs.index)
    rows: list[dict[str, Any]] = []
    for _, group in runs.groupby(label, sort=False):
        row: dict[str, Any] = {k: group[k].iloc[0] for k in keys}
        ok = group["status"] == "ok" if "status" in group else pd.Series(True, group.index)
        row["n"] = int(ok.sum())
        failed = int((~ok).sum())
        row["status"] = "ok" if failed == 0 else f"{failed}/{len(group)} failed"
        for metric in metrics:
            values = group.loc[ok, metric].dropna().astype(float)
            mean = float(values.mean()) if len(values) else np.nan
            std = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[metric] = mean
            row[f"{metric} std"] = std
            text = format_cell(metric, mean) if len(values) else ""
            if np.isfinite(std):
                text += f" ± {format_cell(metric, std)}"
            row[f"{metric} ± std"] = text
        rows.append(row)
    table = pd.DataFrame(rows)
    if rank_by in table and table[rank_by].notna().any():
        table["rank"] = table[rank_by].rank(ascending=False, method="min").astype("Int64")
    return table


def seeds_markdown(table: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> str:
    """The :func:`aggregate_seeds` table as Markdown, best first: rank, the setting, n,
    status and each metric as ``mean ± std``."""
    shown = table.sort_values("rank") if "rank" in table else table
    columns = [
        *(["rank"] if "rank" in table else []),
        *(k for k in keys if k in table),
        "n",
        "status",
        *(f"{m} ± std" for m in metrics if f"{m} ± std" in table),
    ]
    return (
        shown[columns]
        .astype(str)
        .replace({"<NA>": ""})
        .to_markdown(index=False, disable_numparse=True)
    )


def plot_sweep(table: pd.DataFrame, keys: list[str], metrics: list[str], path: Path) -> bool:
    """The first swept key against each metric (one panel each), one line per combination
    of the other keys, with error bars of one standard deviation where the table has a
    ``<metric> std`` column (a sweep over seeds: see :func:`aggregate_seeds`); False if
    there is nothing to plot."""
    metrics = [m for m in metrics if m in table and table[m].notna().any()]
    if table.empty or not metrics or keys[0] not in table:
        return False
    plt = pyplot()

    x_key, others = keys[0], [k for k in keys[1:] if k in table]
    numeric = pd.api.types.is_numeric_dtype(table[x_key])
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    groups = table.groupby(others, dropna=False) if others else [((), table)]
    for axis, metric in zip(axes[0], metrics, strict=True):
        for group_values, rows in groups:
            rows = rows.dropna(subset=[metric])
            if rows.empty:
                continue
            if numeric:
                rows = rows.sort_values(x_key)
                x = rows[x_key].astype(float)
            else:
                x = rows[x_key].astype(str)
            values = group_values if isinstance(group_values, tuple) else (group_values,)
            label = ", ".join(f"{k}={v}" for k, v in zip(others, values, strict=False)) or None
            if f"{metric} std" in rows:
                spread = rows[f"{metric} std"].fillna(0.0)
                axis.errorbar(x, rows[metric], yerr=spread, marker="o", capsize=3, label=label)
            else:
                axis.plot(x, rows[metric], marker="o", label=label)
        if numeric and _log_spaced(table[x_key]):
            axis.set_xscale("log")
        axis.set_xlabel(x_key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if others:
            axis.legend(fontsize=8)
    figure.suptitle(f"sweep over {', '.join(keys)}")
    figure.tight_layout()
    with closing_figure(figure):
        save_figure_atomically(figure, path)
    return True


def _log_spaced(values: pd.Series) -> bool:
    positive = values.dropna().astype(float)
    positive = positive[positive > 0]
    return len(positive) >= 3 and positive.max() / positive.min() >= 100
