"""The numbers of a test evaluation: confusion matrix, per-class accuracy, one-vs-rest ROC
curves and AUC of classifier scores, as tables (torchmetrics; scikit-learn for raw scores).
Undefined classes: see :mod:`lab.callbacks.evaluation`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_roc,
)

from lab.errors import LabError

INDEX_NAME = "true\\predicted"
"""Name of the index column of ``confusion_matrix.csv`` (rows: true class, columns:
predicted class)."""


# -- computing -----------------------------------------------------------------------------


def checked_scores(
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
    probabilities, targets = checked_scores(logits, targets, class_names, softmax)
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
    probabilities, targets = checked_scores(logits, targets, class_names, softmax)
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
    scores, targets = checked_scores(logits, targets, class_names, softmax)
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
    scores, targets = checked_scores(logits, targets, class_names, softmax)
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
