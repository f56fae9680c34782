"""The tables (``svm.csv``, ``svm.md``) and the figure (``svm.png``) of a ``lab svm`` run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab.io import atomic_write_text
from lab.plots import closing_figure, pyplot, save_figure_atomically
from lab.runs.metrics import format_cell

# -- tables and figure ---------------------------------------------------------------------


def best_row(table: pd.DataFrame) -> int:
    """Index of the setting with the best val accuracy (the first of equals)."""
    return int(table["val_acc"].to_numpy().argmax())


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, metrics to 4 decimals (test accuracy and macro F1 with their
    95% interval in brackets), the best setting by val marked."""
    bounds = [c for c in table.columns if c.endswith(("_low", "_high"))]
    shown = table.drop(columns=bounds).astype(object)
    for column in shown.columns:
        if column.endswith("seconds"):
            shown[column] = [f"{v:.2f}" for v in table[column]]
        elif column.endswith(("_acc", "_f1", "_macro")):
            none = [None] * len(table)
            low, high = table.get(f"{column}_low", none), table.get(f"{column}_high", none)
            shown[column] = [
                format_cell(column, v, lo, hi)  # as every table of runs writes a score
                for v, lo, hi in zip(table[column], low, high, strict=True)
            ]
    best = ["" for _ in range(len(table))]
    if len(table):
        best[best_row(table)] = "best (val)"
    shown.insert(0, "best", best)
    return shown.to_markdown(index=False, disable_numparse=True)


def write_tables(table: pd.DataFrame, out_dir: Path) -> None:
    """``svm.csv`` and ``svm.md`` of the table."""
    atomic_write_text(out_dir / "svm.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out_dir / "svm.md", to_markdown(table) + "\n")


def plot_svm(table: pd.DataFrame, path: Path, chance: float | None = None) -> None:
    """Grouped bars of test accuracy: a panel per layer, a group per scaler (and grid
    values), a bar per kernel; the best setting by val outlined, chance dashed."""
    plt = pyplot()

    fixed = {"layer", "kernel", "scaler"}
    params = [c for c in table.columns if c not in fixed and c != "n_train"]
    params = params[: params.index("val_acc")] if "val_acc" in params else []
    layers = list(dict.fromkeys(table["layer"]))
    kernels = list(dict.fromkeys(table["kernel"]))
    best = best_row(table)

    def group_of(row: pd.Series) -> str:
        return "\n".join([str(row["scaler"]), *(f"{p}={row[p]}" for p in params)])

    groups = list(dict.fromkeys(group_of(row) for _, row in table.iterrows()))
    width = 0.8 / len(kernels)
    figure, axes = plt.subplots(
        1,
        len(layers),
        figsize=(max(4.0, 0.9 * len(groups) * max(1, len(kernels) / 2) + 1.5) * len(layers), 4),
        squeeze=False,
        dpi=100,
    )
    with closing_figure(figure):
        from matplotlib.patches import Patch

        colors = plt.get_cmap("tab10")
        for axis, layer in zip(axes[0], layers, strict=True):
            rows = table[table["layer"] == layer]
            for k, kernel in enumerate(kernels):
                for index, row in rows[rows["kernel"] == kernel].iterrows():
                    x = groups.index(group_of(row)) + (k - (len(kernels) - 1) / 2) * width
                    outlined = index == best
                    axis.bar(
                        x,
                        row["test_acc"],
                        width,
                        color=colors(k % 10),
                        edgecolor="black" if outlined else "none",
                        linewidth=2 if outlined else 0,
                    )
            handles = [
                Patch(color=colors(k % 10), label=kernel) for k, kernel in enumerate(kernels)
            ]
            if chance is not None:
                handles.append(
                    axis.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
                )
            axis.set_xticks(range(len(groups)), groups, fontsize=8)
            axis.set_ylim(0, 1.18)
            axis.set_yticks(np.linspace(0, 1, 6))
            axis.set_ylabel("test accuracy")
            axis.set_title(f"{layer} features")
            axis.legend(handles=handles, fontsize=8, loc="upper center", ncol=len(handles))
        row = table.iloc[best]
        chosen = ", ".join(
            [str(row["layer"]), str(row["kernel"]), str(row["scaler"])]
            + [f"{p}={row[p]}" for p in params]
        )
        figure.suptitle(
            f"SVM test accuracy; outlined: the best by val ({chosen}: val "
            f"{row['val_acc']:.3f}, test {row['test_acc']:.3f})",
            fontsize=10,
        )
        figure.tight_layout()
        save_figure_atomically(figure, path)
