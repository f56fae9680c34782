"""The curves of a sweep's settings on one figure (``sweep_curves.png`` / ``.csv``): each
setting's ``train_step/loss``, ``train_step/acc`` and ``grad_norm/total`` over the
optimizer steps and its ``val/acc`` per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lab.commands.report import Run, log_scale_if_wide, read_metrics
from lab.io import atomic_write_text
from lab.plots import closing_figure, pyplot, save_figure_atomically

# Curves of every setting on one figure: metrics over optimizer steps, then per epoch.
STEP_CURVES = ("train_step/loss", "train_step/acc", "grad_norm/total")
EPOCH_CURVES = ("val/acc",)


def curve_table(runs: dict[str, Path]) -> pd.DataFrame:
    """The long table behind ``sweep_curves``: ``setting, step, metric, value, epoch``, one
    row per logged value of ``STEP_CURVES`` and ``EPOCH_CURVES`` in each setting's run
    folder (``{label: run folder}``); a value logged twice for the same step (a resumed
    run) keeps the later one, ``val/acc`` keeps the last of each epoch. Runs without a
    readable ``metrics.csv`` are left out."""
    columns = ["setting", "step", "metric", "value", "epoch"]
    frames = []
    for label, run_dir in runs.items():
        run = Run(path=Path(run_dir), id=label)
        read_metrics(run)  # a truncated last row is left out
        if run.metrics is None:
            continue
        metrics = run.metrics
        for metric in (*STEP_CURVES, *EPOCH_CURVES):
            if metric not in metrics or metrics[metric].isna().all():
                continue
            rows = metrics.dropna(subset=[metric])
            frame = pd.DataFrame(
                {
                    "setting": label,
                    "step": rows["step"] if "step" in rows else float("nan"),
                    "metric": metric,
                    "value": rows[metric].astype(float),
                    "epoch": rows["epoch"] if "epoch" in rows else float("nan"),
                }
            )
            by = "epoch" if metric in EPOCH_CURVES else "step"
            frame = frame.dropna(subset=[by]).drop_duplicates(subset=[by], keep="last")
            frames.append(frame.sort_values(by))
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)[columns]
    for column in ("step", "epoch"):
        table[column] = table[column].astype("Int64")
    return table


def plot_curves(table: pd.DataFrame, path: Path, smooth_points: int = 50) -> bool:
    """One figure, a panel per metric of ``curve_table``'s table (step metrics against the
    optimizer step, ``val/acc`` against the epoch), one line per setting; False if the
    table is empty. Step curves are drawn as moving averages of about
    ``1 / smooth_points`` of their length (batch accuracy at batch size 1 is 0 or 1); the
    step axis turns logarithmic beyond step 10 (symlog) when the settings' step counts
    differ more than 20-fold (batch size 1 against 64), so every setting stays visible."""
    metrics = [m for m in (*STEP_CURVES, *EPOCH_CURVES) if m in set(table["metric"])]
    if table.empty or not metrics:
        return False
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    settings = list(dict.fromkeys(table["setting"]))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(settings)}
    columns = min(len(settings), 3)
    legend_rows = -(-len(settings) // columns)
    height = 4.0 + 0.25 * legend_rows  # inches: the panels, then the legend below them
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(5 * len(metrics), height), squeeze=False, dpi=100
    )
    for axis, metric in zip(axes[0], metrics, strict=True):
        rows = table[table["metric"] == metric]
        per_epoch = metric in EPOCH_CURVES
        x_column = "epoch" if per_epoch else "step"
        windows = []
        for setting in settings:
            series = rows[rows["setting"] == setting]
            if series.empty:
                continue
            x = series[x_column].astype(float).to_numpy()
            y = series["value"]
            window = 1 if per_epoch else max(1, len(series) // smooth_points)
            windows.append(window)
            y = y.rolling(window, min_periods=1).mean() if window > 1 else y
            marker = "o" if per_epoch else None
            axis.plot(
                x,
                y.to_numpy(),
                marker=marker,
                markersize=3,
                linewidth=1.2,
                color=colours[setting],
                label=setting,
            )
        if per_epoch:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlabel("epoch")
        else:
            last_steps = rows.groupby("setting")["step"].max().astype(float)
            if len(last_steps) > 1 and last_steps.max() > 20 * max(last_steps.min(), 1.0):
                axis.set_xscale("symlog", linthresh=10)
            axis.set_xlabel("optimizer step")
        if metric.endswith("loss") or metric.startswith("grad_norm"):
            log_scale_if_wide(axis)
        smoothed = max(windows, default=1) > 1
        axis.set_title(metric + (" (moving average)" if smoothed else ""))
        axis.grid(alpha=0.3)
    # One legend for all panels, below them: in a panel it would hide some curves.
    entries: dict[str, Any] = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    figure.legend(entries.values(), entries.keys(), loc="lower center", ncol=columns, fontsize=8)
    figure.tight_layout(rect=(0, (0.1 + 0.25 * legend_rows) / height, 1, 1))
    with closing_figure(figure):
        save_figure_atomically(figure, path)
    return True


def write_curves(runs: dict[str, Path], sweep_dir: Path) -> bool:
    """``sweep_curves.csv`` and ``sweep_curves.png`` in ``sweep_dir`` from the settings'
    run folders (``{label: run folder}``); False (nothing written) if none logged any of
    the curves."""
    table = curve_table(runs)
    if table.empty:
        return False
    atomic_write_text(sweep_dir / "sweep_curves.csv", table.to_csv(index=False))
    return plot_curves(table, sweep_dir / "sweep_curves.png")
