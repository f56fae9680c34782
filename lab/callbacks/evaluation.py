"""What a classifier gets right and wrong on the test split: confusion matrix, per-class
accuracy and one-vs-rest ROC curves with their AUC, as CSV and PNG files in the run
folder and as figures in TensorBoard.

The task's test steps return ``{"features", "targets", "logits"}`` (``lab.tasks.Classifier``);
:class:`TestEvaluation` keeps the logits and targets and, at the end of testing, computes
everything with torchmetrics (probabilities are the softmax of the logits). The plain
functions below do the computing and the drawing, so they can be used (and tested)
without a Trainer; :func:`write_evaluation` writes every file of a set of scores (also
raw scores, such as an SVM's decision values, with ``softmax=False``).

A class that is absent from the test targets (or is the only class present) has no
defined ROC curve or AUC: it is left out of ``roc.csv``, gets NaN in ``auc.csv`` and the
macro AUC is the mean over the classes that do have one. (torchmetrics would give such a
class an AUC of 0 and count it in its macro average.)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_roc,
)

from lab.callbacks.figures import figure_writer, save_figure_atomically, task_class_names
from lab.callbacks.figures import run_dir as run_folder
from lab.distributed import gather_split
from lab.errors import LabError
from lab.predictions import (
    INTERVALS_FILE,
    PREDICTIONS_FILE,
    intervals_table,
    predictions_table,
    write_intervals,
    write_predictions,
)
from lab.runs import atomic_write_text

INDEX_NAME = "true\\predicted"
"""Name of the index column of ``confusion_matrix.csv`` (rows: true class, columns:
predicted class)."""

_ANNOTATE_MAX = 20  # annotate cells / show a legend up to this many classes
_TICKS_MAX = 50  # name the classes on the axes up to this many classes


# -- computing -----------------------------------------------------------------------------


def _checked(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (N, C), targets (N,) int64)`` on the CPU, after checking that the shapes,
    the targets and the class names agree. With ``softmax`` the scores are the float32
    probabilities of the logits; without, the given scores as float64 (e.g. an SVM's
    decision values, whose ties float32 could create)."""
    logits = torch.as_tensor(logits).detach().cpu()
    targets = torch.as_tensor(targets).detach().cpu()
    if logits.ndim != 2 or targets.ndim != 1 or len(logits) != len(targets):
        raise LabError(
            f"expected logits (N, C) and targets (N,), got shapes {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if len(targets) == 0:
        raise LabError("expected at least one test sample, got none")
    num_classes = logits.shape[1]
    if len(class_names) != num_classes:
        raise LabError(
            f"expected one class name per logit column ({num_classes}), got {len(class_names)}"
        )
    if targets.is_floating_point() or targets.min() < 0 or targets.max() >= num_classes:
        raise LabError(
            f"expected integer targets in [0, {num_classes}), got {targets.dtype} values from "
            f"{targets.min().item()} to {targets.max().item()}"
        )
    scores = logits.float().softmax(dim=1) if softmax else logits.double()
    return scores, targets.long()


def _counts(probabilities: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    matrix = multiclass_confusion_matrix(
        probabilities, targets, num_classes=probabilities.shape[1], normalize="none"
    )
    return matrix.numpy().astype(np.int64)


def _defined(targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Which classes have a one-vs-rest ROC curve: at least one positive and one negative."""
    support = np.bincount(targets.numpy(), minlength=num_classes)
    return (support > 0) & (support < len(targets))


def _roc_curves(
    scores: torch.Tensor,
    targets: torch.Tensor,
    classes: np.ndarray,
    softmax: bool,
    drop_intermediate: bool,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(fpr, tpr, threshold)`` float64 arrays of the one-vs-rest curve of each class in
    ``classes`` (each has a defined curve), starting at (0, 0) with threshold ``inf``."""
    if not softmax:  # raw scores: scikit-learn, which takes them as they are
        from sklearn.metrics import roc_curve

        y, x = targets.numpy(), scores.numpy()
        return [roc_curve(y == c, x[:, c], drop_intermediate=drop_intermediate) for c in classes]
    num_classes = scores.shape[1]
    with warnings.catch_warnings():  # undefined classes are never asked for
        warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
        fprs, tprs, thresholds = multiclass_roc(
            scores, targets, num_classes=num_classes, thresholds=None
        )
    support = np.bincount(targets.numpy(), minlength=num_classes)
    curves = []
    for c in classes:
        fpr = fprs[c].numpy().astype(np.float64)
        tpr = tprs[c].numpy().astype(np.float64)
        threshold = thresholds[c].numpy().astype(np.float64)
        threshold[0] = np.inf  # torchmetrics puts 1.0 there, which a probability can equal
        if drop_intermediate and len(fpr) > 3:
            # scikit-learn's rule, on the (exact) counts behind the rates, applied (as
            # there) to the points after the starting one
            fps = np.rint(fpr[1:] * (len(targets) - support[c]))
            tps = np.rint(tpr[1:] * support[c])
            corner = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
            keep = np.r_[0, 1 + np.flatnonzero(np.r_[True, corner, True])]
            fpr, tpr, threshold = fpr[keep], tpr[keep], threshold[keep]
        curves.append((fpr, tpr, threshold))
    return curves


def confusion_table(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
) -> pd.DataFrame:
    """Integer counts, rows = true class, columns = predicted class, both labelled by
    class name; the index is named ``true\\predicted`` (:data:`INDEX_NAME`)."""
    probabilities, targets = _checked(logits, targets, class_names, softmax)
    index = pd.Index(list(class_names), name=INDEX_NAME)
    return pd.DataFrame(_counts(probabilities, targets), index=index, columns=list(class_names))


def per_class_table(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
) -> pd.DataFrame:
    """Columns ``class, class_name, accuracy, support``: the share of each class's test
    samples predicted as that class (its recall; NaN for a class with no samples)."""
    probabilities, targets = _checked(logits, targets, class_names, softmax)
    counts = _counts(probabilities, targets)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(support > 0, np.diag(counts) / support, np.nan)
    return pd.DataFrame(
        {
            "class": np.arange(len(class_names)),
            "class_name": list(class_names),
            "accuracy": accuracy,
            "support": support,
        }
    )


def roc_table(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    drop_intermediate: bool = True,
    softmax: bool = True,
) -> pd.DataFrame:
    """Columns ``class, class_name, fpr, tpr, threshold``: the points of each class's
    one-vs-rest ROC curve, classes without a curve left out.

    The full curve has a point per distinct probability, plus the starting point (0, 0)
    whose threshold is ``inf`` (as in scikit-learn). With ``drop_intermediate`` (as in
    scikit-learn's ``roc_curve``) only its corners are kept: the points dropped lie on
    the straight segments between them, so the curve and the area under it are the same,
    and a 10,000-sample, 200-class test split gives tens of thousands of rows, not two
    million.

    With ``softmax=False`` the scores are taken as they are (an SVM's decision values):
    the curves are then scikit-learn's ``roc_curve`` of each column, as torchmetrics
    would apply a softmax to scores outside [0, 1].
    """
    scores, targets = _checked(logits, targets, class_names, softmax)
    num_classes = scores.shape[1]
    parts = []
    defined = np.flatnonzero(_defined(targets, num_classes))
    for c, (fpr, tpr, threshold) in zip(
        defined, _roc_curves(scores, targets, defined, softmax, drop_intermediate), strict=True
    ):
        parts.append(
            pd.DataFrame(
                {
                    "class": int(c),
                    "class_name": class_names[c],
                    "fpr": fpr,
                    "tpr": tpr,
                    "threshold": threshold,
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                "class": pd.Series(dtype=np.int64),
                "class_name": pd.Series(dtype=object),
                **{k: pd.Series(dtype=np.float64) for k in ("fpr", "tpr", "threshold")},
            }
        )
    return pd.concat(parts, ignore_index=True)


def auc_table(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
) -> pd.DataFrame:
    """Columns ``class, class_name, auc``: each class's one-vs-rest ROC AUC (NaN where it
    is undefined) and a last row ``-1, macro`` with their mean over the defined classes
    (NaN if none is). ``softmax=False``: the scores as they are (see :func:`roc_table`)."""
    scores, targets = _checked(logits, targets, class_names, softmax)
    num_classes = scores.shape[1]
    defined = _defined(targets, num_classes)
    if softmax:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
            auc = multiclass_auroc(
                scores, targets, num_classes=num_classes, average=None, thresholds=None
            ).numpy()
    else:
        from sklearn.metrics import roc_auc_score

        y, x = targets.numpy(), scores.numpy()
        auc = np.full(num_classes, np.nan)
        for c in np.flatnonzero(defined):
            auc[c] = roc_auc_score(y == c, x[:, c])
    auc = auc.astype(np.float64)
    auc[~defined] = np.nan
    macro = float(auc[defined].mean()) if defined.any() else float("nan")
    return pd.DataFrame(
        {
            "class": [*range(num_classes), -1],
            "class_name": [*class_names, "macro"],
            "auc": [*auc, macro],
        }
    )


# -- drawing -------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    return plt


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

    plt = _pyplot()
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
    plt = _pyplot()
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
    plt = _pyplot()
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


# -- the callback --------------------------------------------------------------------------


def _csv(table: pd.DataFrame, index: bool = False) -> str:
    buffer = io.StringIO()
    table.to_csv(buffer, index=index, float_format="%.9g")
    return buffer.getvalue()


def write_evaluation(
    out_dir: Path | None,
    scores: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    *,
    softmax: bool = True,
    writer: Any | None = None,
    tag_prefix: str = "test",
    global_step: int = 0,
    confusion_matrix: bool = True,
    per_class_accuracy: bool = True,
    roc: bool = True,
    normalize_display: bool = True,
) -> pd.DataFrame | None:
    """Write the evaluation files of classifier scores into ``out_dir`` and return the
    :func:`auc_table` (None without ``roc``).

    The files are those :class:`TestEvaluation` describes: ``confusion_matrix.csv/.png``,
    ``per_class_accuracy.csv/.png``, ``roc.csv``, ``auc.csv`` and ``roc.png`` (each part
    can be switched off). ``scores`` are logits (``softmax=True``: probabilities are
    their softmax) or scores taken as they are (``softmax=False``, e.g. an SVM's one-vs-
    rest decision values; the predicted class is the arg-max either way). Each figure
    also goes to ``writer`` (a TensorBoard ``SummaryWriter``), if given, as
    ``<tag_prefix>/confusion_matrix``, ``<tag_prefix>/per_class_accuracy`` and
    ``<tag_prefix>/roc`` at ``global_step``. With ``out_dir`` None nothing is written to
    disk (the figures still go to ``writer``).
    """
    outputs: list[tuple[str, dict[str, str], Any]] = []  # (name, CSVs, figure)
    auc = None
    plt = _pyplot()
    try:
        if confusion_matrix:
            table = confusion_table(scores, targets, class_names, softmax=softmax)
            figure = plot_confusion(table, normalize=normalize_display)
            outputs.append(
                ("confusion_matrix", {"confusion_matrix.csv": _csv(table, True)}, figure)
            )
        if per_class_accuracy:
            table = per_class_table(scores, targets, class_names, softmax=softmax)
            figure = plot_per_class(table)
            outputs.append(("per_class_accuracy", {"per_class_accuracy.csv": _csv(table)}, figure))
        if roc:
            auc = auc_table(scores, targets, class_names, softmax=softmax)
            curves = roc_table(scores, targets, class_names, softmax=softmax)
            csvs = {"roc.csv": _csv(curves), "auc.csv": _csv(auc)}
            outputs.append(("roc", csvs, plot_roc(curves, auc)))
        for name, csvs, figure in outputs:
            if out_dir is not None:
                out_dir = Path(out_dir)
                out_dir.mkdir(parents=True, exist_ok=True)
                for file_name, text in csvs.items():
                    atomic_write_text(out_dir / file_name, text)
                save_figure_atomically(figure, out_dir / f"{name}.png")
            if writer is not None:
                writer.add_figure(
                    f"{tag_prefix}/{name}", figure, global_step=global_step, close=False
                )
    finally:
        for *_, figure in outputs:
            plt.close(figure)
    return auc


class TestEvaluation(L.Callback):
    """At the end of testing, writes into the run folder (``trainer.log_dir``):

    - ``confusion_matrix.csv`` (rows: true class, columns: predicted class, labelled by
      class name; the index column is named ``true\\predicted``) and ``.png`` (counts and,
      with ``normalize_display``, the row-normalised matrix beside them);
    - ``per_class_accuracy.csv`` (``class, class_name, accuracy, support``) and ``.png``;
    - ``roc.csv`` (``class, class_name, fpr, tpr, threshold``, every point of every
      one-vs-rest curve), ``roc.png`` and ``auc.csv`` (``class, class_name, auc`` and a
      last ``-1, macro`` row). Undefined classes: see the module's docstring;
    - ``predictions.csv`` (one row per test image) and ``intervals.csv`` (95% intervals of
      the test accuracy, macro F1 and macro AUC): see :mod:`lab.predictions`.

    Each figure also goes to the first logger that takes figures (TensorBoard) as
    ``test/confusion_matrix``, ``test/per_class_accuracy`` and ``test/roc``; the macro AUC
    is logged as ``test/auc_macro``. Batches without ``"logits"`` (a model without a
    classifier) are skipped; with none at all nothing is written.

    Args:
        confusion_matrix: write the confusion matrix.
        per_class_accuracy: write the per-class accuracy.
        roc: write the ROC curves and AUC (and log ``test/auc_macro``).
        normalize_display: add the row-normalised panel to the confusion-matrix figure.
        predictions: write ``predictions.csv`` and ``intervals.csv``.
        bootstrap_resamples: resamples of the test images behind the bootstrap intervals.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        confusion_matrix: bool = True,
        per_class_accuracy: bool = True,
        roc: bool = True,
        normalize_display: bool = True,
        predictions: bool = True,
        bootstrap_resamples: int = 1000,
    ) -> None:
        if bootstrap_resamples < 1:
            raise LabError(f"bootstrap_resamples must be at least 1, got {bootstrap_resamples}")
        self.predictions = predictions
        self.bootstrap_resamples = bootstrap_resamples
        self.confusion_matrix = confusion_matrix
        self.per_class_accuracy = per_class_accuracy
        self.roc = roc
        self.normalize_display = normalize_display
        self._logits: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logits, self._targets = [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or outputs.get("logits") is None:
            return
        self._logits.append(outputs["logits"].detach().float())
        self._targets.append(outputs["targets"].detach())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logits, targets = self._logits, self._targets
        self._logits, self._targets = [], []
        wanted = self.confusion_matrix or self.per_class_accuracy or self.roc or self.predictions
        if not logits or not wanted:
            return
        x = torch.cat(logits)
        y = torch.cat(targets)
        # Under DDP: the whole split, in order and without DistributedSampler's padding.
        x, y = gather_split(trainer, x, "test"), gather_split(trainer, y, "test")
        x, y = x.cpu(), y.cpu()
        names = task_class_names(pl_module, x.shape[1])[: x.shape[1]]
        if trainer.is_global_zero:
            auc = self._write(trainer, x, y, names)
            self._write_predictions(trainer, x, y, names)
        else:
            auc = auc_table(x, y, names) if self.roc else None
        if auc is not None:  # every process logs the same value (all hold all the data)
            macro = float(auc["auc"].iloc[-1])
            if np.isfinite(macro):
                pl_module.log("test/auc_macro", macro)
            else:
                rank_zero_warn("no class has a defined ROC AUC on the test split")

    def _write_predictions(
        self, trainer: L.Trainer, logits: torch.Tensor, targets: torch.Tensor, names: list[str]
    ) -> None:
        run_dir = run_folder(trainer)
        if not self.predictions or run_dir is None:
            return
        table = predictions_table(logits, targets, names)
        write_predictions(run_dir / PREDICTIONS_FILE, table)
        probabilities = logits.float().softmax(dim=1).numpy()
        intervals = intervals_table(
            table["target"].to_numpy(),
            table["prediction"].to_numpy(),
            probabilities,
            n_resamples=self.bootstrap_resamples,
        )
        write_intervals(run_dir / INTERVALS_FILE, intervals)

    def _write(
        self,
        trainer: L.Trainer,
        logits: torch.Tensor,
        targets: torch.Tensor,
        names: list[str],
    ) -> pd.DataFrame | None:
        run_dir = run_folder(trainer)
        auc = write_evaluation(
            run_dir,
            logits,
            targets,
            names,
            writer=figure_writer(trainer),
            tag_prefix="test",
            global_step=trainer.global_step,
            confusion_matrix=self.confusion_matrix,
            per_class_accuracy=self.per_class_accuracy,
            roc=self.roc,
            normalize_display=self.normalize_display,
        )
        written = [
            name
            for name, on in (
                ("confusion_matrix", self.confusion_matrix),
                ("per_class_accuracy", self.per_class_accuracy),
                ("roc", self.roc),
            )
            if on
        ]
        if run_dir is not None and written:
            rank_zero_info(
                f"test evaluation ({len(targets)} samples): {', '.join(written)} in {run_dir}"
            )
        return auc
