"""The per-image files of a test split, made from a model's scores: ``predictions.csv``
and ``intervals.csv`` (their format, and the readers that the commands use, are in
:mod:`lab.runs.predictions`, which needs no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.callbacks.evaluation_tables import checked_scores
from lab.runs.predictions import (
    INTERVALS_FILE,
    PREDICTIONS_FILE,
    intervals_table,
    write_intervals,
    write_predictions,
)

__all__ = ["predictions_table", "write_split_predictions"]


def predictions_table(
    scores: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
) -> pd.DataFrame:
    """The ``predictions.csv`` table (see the module docstring) of scores ``(N, C)`` and
    targets ``(N,)``; ``softmax``: the scores are logits, ``score`` their probability."""
    # The same checks (shapes, target range, one name per class) and scores as the
    # confusion matrix and ROC tables.
    probabilities, targets = checked_scores(scores, targets, class_names, softmax)
    values = probabilities.numpy()
    prediction = values.argmax(axis=1)  # the first of tied classes, as torch's argmax
    order = np.argsort(-values, axis=1, kind="stable")[:, : min(5, values.shape[1])]
    names = np.asarray(class_names, dtype=object)
    target = targets.numpy()
    return pd.DataFrame(
        {
            "index": np.arange(len(target)),
            "target": target,
            "target_name": names[target],
            "prediction": prediction,
            "prediction_name": names[prediction],
            "score": values[np.arange(len(target)), prediction],
            "top5": [" ".join(map(str, row)) for row in order],
        }
    )


def write_split_predictions(
    folder: Path,
    scores: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_names: list[str],
    softmax: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Write a test split's ``predictions.csv`` and ``intervals.csv`` into ``folder`` and
    return the intervals table; ``softmax``: the scores are logits (the AUC interval uses
    their softmax), else they are taken as they are (an SVM's decision values)."""
    table = predictions_table(scores, targets, class_names, softmax=softmax)
    write_predictions(folder / PREDICTIONS_FILE, table)
    if softmax:
        scores = torch.as_tensor(scores).float().softmax(dim=1).numpy()
    intervals = intervals_table(
        table["target"].to_numpy(),
        table["prediction"].to_numpy(),
        scores,
        n_resamples=n_resamples,
        seed=seed,
    )
    write_intervals(folder / INTERVALS_FILE, intervals)
    return intervals
