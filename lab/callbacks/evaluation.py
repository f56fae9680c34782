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
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lab.callbacks.batches import BatchEnd, BatchEndCallback
from lab.callbacks.evaluation_figures import plot_confusion, plot_per_class, plot_roc
from lab.callbacks.evaluation_tables import (
    INDEX_NAME,
    auc_table,
    confusion_table,
    per_class_table,
    roc_table,
)
from lab.callbacks.figures import figure_writer, task_class_names
from lab.callbacks.figures import run_dir as run_folder
from lab.callbacks.predictions import write_split_predictions
from lab.distributed import gather_split
from lab.errors import LabError
from lab.io import atomic_write_text
from lab.plots import publish_figure, pyplot

__all__ = [
    "INDEX_NAME",
    "TestEvaluation",
    "auc_table",
    "confusion_table",
    "per_class_table",
    "plot_confusion",
    "plot_per_class",
    "plot_roc",
    "roc_table",
    "write_evaluation",
]


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
    plt = pyplot()
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
            png = out_dir / f"{name}.png" if out_dir is not None else None
            publish_figure(figure, png, writer, f"{tag_prefix}/{name}", global_step)
    finally:
        for *_, figure in outputs:
            plt.close(figure)
    return auc


class TestEvaluation(BatchEndCallback):
    """At the end of testing, writes into the run folder (``trainer.log_dir``):

    - ``confusion_matrix.csv`` (rows: true class, columns: predicted class, labelled by
      class name; the index column is named ``true\\predicted``) and ``.png`` (counts and,
      with ``normalize_display``, the row-normalised matrix beside them);
    - ``per_class_accuracy.csv`` (``class, class_name, accuracy, support``) and ``.png``;
    - ``roc.csv`` (``class, class_name, fpr, tpr, threshold``, every point of every
      one-vs-rest curve), ``roc.png`` and ``auc.csv`` (``class, class_name, auc`` and a
      last ``-1, macro`` row). Undefined classes: see the module's docstring;
    - ``predictions.csv`` (one row per test image) and ``intervals.csv`` (95% intervals of
      the test accuracy, macro F1 and macro AUC): see :mod:`lab.runs.predictions`.

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

    def on_batch(self, trainer: L.Trainer, end: BatchEnd) -> None:
        outputs = end.outputs
        if end.stage != "test" or not isinstance(outputs, dict) or outputs.get("logits") is None:
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
        write_split_predictions(
            run_dir, logits, targets, names, n_resamples=self.bootstrap_resamples
        )

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
