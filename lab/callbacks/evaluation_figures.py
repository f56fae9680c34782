"""The figures of a test evaluation: confusion matrix, per-class accuracy bars and ROC
curves, drawn from the tables of :mod:`lab.callbacks.evaluation_tables`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lab.plots import pyplot

_ANNOTATE_MAX = 20  # annotate cells / show a legend up to this many classes
_TICKS_MAX = 50  # name the classes on the axes up to this many classes


# -- drawing -------------------------------------------------------------------------------


def _name_ticks(axes: Any, names: list[str], x: bool = True, y: bool = True) -> None:
    """Class names on the axes for up to ``_TICKS_MAX`` classes, no tick labels beyond."""
    if len(names) <= _TICKS_MAX:
        return
    if x:
        axes.set_xticks([])
    if y:
        axes.set_yticks([])


def plot_confusion(table: pd.DataFrame, normalize: bool = True):
    """A figure of a :func:`confusion_table`: the counts and, with ``normalize``, beside
    them the row-normalised matrix (each true class's row sums to 1; a class without
    samples stays at 0). Values are written in the cells for up to 20 classes."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    counts = table.to_numpy()
    names = [str(n) for n in table.columns]
    n = len(names)
    side = float(np.clip(0.35 * n + 3, 5, 12))
    panels = 2 if normalize else 1
    figure, axes = plt.subplots(1, panels, figsize=(side * panels, side), dpi=100, squeeze=False)
    annotate = n <= _ANNOTATE_MAX
    rotation = "vertical" if n > 5 else "horizontal"
    ConfusionMatrixDisplay(counts, display_labels=names).plot(
        ax=axes[0, 0], include_values=annotate, values_format="d", xticks_rotation=rotation
    )
    axes[0, 0].set_title(f"counts ({counts.sum()} samples)")
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
        ConfusionMatrixDisplay(share, display_labels=names).plot(
            ax=axes[0, 1],
            include_values=annotate,
            values_format=".2f",
            xticks_rotation=rotation,
            im_kw={"vmin": 0.0, "vmax": 1.0},
        )
        axes[0, 1].set_title("normalised over each true class")
    for ax in axes[0]:
        _name_ticks(ax, names)
        if not annotate:
            for label in ax.get_xticklabels() + ax.get_yticklabels():
                label.set_fontsize(6)
    figure.tight_layout()
    return figure


def plot_per_class(table: pd.DataFrame):
    """A bar chart of a :func:`per_class_table` with a dashed line at the overall accuracy
    (all correct predictions over all samples)."""
    plt = pyplot()
    n = len(table)
    figure, axes = plt.subplots(figsize=(float(np.clip(0.3 * n + 3, 6, 16)), 4.5), dpi=100)
    axes.bar(np.arange(n), table["accuracy"].fillna(0.0), color="tab:blue")
    if n <= _TICKS_MAX:  # mark the classes without test samples
        for i in np.flatnonzero(table["accuracy"].isna().to_numpy()):
            axes.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
    correct = (table["accuracy"].fillna(0.0) * table["support"]).sum()
    overall = correct / max(int(table["support"].sum()), 1)
    axes.axhline(overall, color="tab:red", linestyle="--", label=f"overall {overall:.3f}")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("accuracy")
    axes.set_title("test accuracy per class")
    if n <= _TICKS_MAX:
        axes.set_xticks(np.arange(n), table["class_name"].astype(str), rotation=90 if n > 5 else 0)
    else:
        axes.set_xlabel("class")
    axes.legend(loc="upper right")
    figure.tight_layout()
    return figure


def plot_roc(roc: pd.DataFrame, auc: pd.DataFrame):
    """One-vs-rest ROC curves of a :func:`roc_table`, one per class with its AUC (from an
    :func:`auc_table`) in the legend (left out beyond 20 classes), and the chance line."""
    plt = pyplot()
    per_class = auc[auc["class"] >= 0].set_index("class")["auc"]
    macro = float(auc.loc[auc["class"] == -1, "auc"].iloc[0])
    curves = list(roc.groupby("class", sort=True))
    many = len(curves) > _ANNOTATE_MAX
    figure, axes = plt.subplots(figsize=(7.5 if many else 9, 6.5), dpi=100)
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (c, points) in enumerate(curves):
        color = plt.get_cmap("hsv")(i / len(curves)) if many else cmap(i % cmap.N)
        name = points["class_name"].iloc[0]
        axes.plot(
            points["fpr"],
            points["tpr"],
            color=color,
            linewidth=0.8 if many else 1.5,
            label=f"{name} (AUC {per_class.loc[c]:.3f})",
        )
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(f"ROC, one class vs the rest (macro AUC {macro:.3f})")
    axes.set_aspect("equal")
    if not many:
        axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    figure.tight_layout()
    return figure
