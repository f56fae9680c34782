"""The report's figures: each run's curves, the comparison of every run's validation
curves, and the figures the runs wrote, copied beside the report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from lab.io import atomic_path
from lab.plots import closing_figure, pyplot, save_figure_atomically

# Figures a run folder may hold, shown side by side in this order (a ``*`` pattern stands
# for one kind of figure in several files, e.g. one activation map per layer; LAST_ONLY's
# kinds show only their last file).
FIGURE_PATTERNS = (
    # before/: the test split before fine-tuning (lab.callbacks.BeforeFitEvaluation)
    "before/confusion_matrix.png",
    "confusion_matrix.png",
    "before/per_class_accuracy.png",
    "per_class_accuracy.png",
    "before/roc.png",
    "roc.png",
    "tsne.png",
    "tsne_val_epoch*.png",
    "activations_*.png",
    "pretrain_loss.png",  # layer-wise autoencoder pretraining (lab.tasks.layerwise)
)
LAST_ONLY = {"tsne_val_epoch*.png": "tsne_val_epoch (last)"}
_CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")


def epoch_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch ``train/loss``, ``val/loss``, ``train/acc``, ``val/acc`` (those logged):
    the CSV logger writes train and val in separate rows of an epoch, and the test rows
    after them, which are left out."""
    columns = [c for c in _CURVES if c in metrics]
    if not columns or "epoch" not in metrics:
        return pd.DataFrame()
    rows = metrics[["epoch", *columns]].dropna(subset=columns, how="all")
    rows = rows.dropna(subset=["epoch"])
    return rows.groupby("epoch").last().sort_index()


def _plot_panel(axes: Any, curves: pd.DataFrame, kind: str) -> bool:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for stage in ("train", "val"):
        column = f"{stage}/{kind}"
        if column in curves and curves[column].notna().any():
            series = curves[column].dropna()
            axes.plot(series.index, series.values, marker="o", markersize=3, label=column)
            drawn = True
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(kind)
    if kind == "loss":
        log_scale_if_wide(axes)
    if drawn:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, f"no {kind} logged", ha="center", va="center")
    return drawn


def log_scale_if_wide(axes: Any) -> None:
    """A log y-axis when the plotted values are positive and span more than 100x (e.g. a
    first epoch whose loss dwarfs the rest), so the later epochs stay readable."""
    values = [v for line in axes.get_lines() for v in line.get_ydata() if v == v]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        axes.set_yscale("log")


def plot_curves(curves: pd.DataFrame, title: str, path: Path) -> None:
    """A PNG with two panels: loss (train, val) and accuracy (train, val) against epoch."""
    plt = pyplot()
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    with closing_figure(figure):
        _plot_panel(loss_axes, curves, "loss")
        _plot_panel(acc_axes, curves, "acc")
        loss_axes.set_title("loss")
        acc_axes.set_title("accuracy")
        figure.suptitle(title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomically(figure, path)


def plot_comparison(curves: dict[str, pd.DataFrame], path: Path) -> None:
    """A PNG with every run's ``val/acc`` and ``val/loss`` curves overlaid."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    with closing_figure(figure):
        for axes, column in zip(panels, ("val/acc", "val/loss"), strict=True):
            drawn = False
            for run_id, frame in curves.items():
                if column in frame and frame[column].notna().any():
                    series = frame[column].dropna()
                    axes.plot(series.index, series.values, marker="o", markersize=3, label=run_id)
                    drawn = True
            axes.set_title(column)
            if column.endswith("loss"):
                log_scale_if_wide(axes)
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            if drawn:
                axes.legend(fontsize=7)
            else:
                axes.text(0.5, 0.5, f"no {column} logged", ha="center", va="center")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomically(figure, path)


def _epoch_of(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def run_figures(run_dir: Path) -> dict[str, Path]:
    """The figures of a run folder by kind: the file's path in the run folder (e.g.
    ``roc.png``, ``before/roc.png``), or for ``tsne_val_epoch*.png``
    ``tsne_val_epoch (last)`` with the last epoch's file."""
    found: dict[str, Path] = {}
    for pattern in FIGURE_PATTERNS:
        files = sorted(p for p in run_dir.glob(pattern) if p.is_file())
        if pattern in LAST_ONLY:
            if files:
                found[LAST_ONLY[pattern]] = max(files, key=_epoch_of)
        else:
            for file in files:
                found[file.relative_to(run_dir).as_posix()] = file
    return found


def copy_atomically(source: Path, target: Path) -> None:
    """Copy a file via a temporary file in the target's folder and a rename."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def image_html(relative: str, width: int) -> str:
    """An ``<img>`` of a file of the report folder at ``width`` pixels (Markdown has none)."""
    return f'<img src="{quote(relative)}" width="{width}">'


def image_tables(cells: dict[str, str | None], per_table: int = 4) -> str:
    """Markdown tables whose columns are runs and whose cells are images (``—`` for a run
    without one), at most ``per_table`` runs in each."""
    items = list(cells.items())
    tables = []
    for start in range(0, len(items), per_table):
        chunk = dict(items[start : start + per_table])
        frame = pd.DataFrame([{k: v if v else "—" for k, v in chunk.items()}])
        tables.append(frame.to_markdown(index=False, disable_numparse=True))
    return "\n\n".join(tables)
