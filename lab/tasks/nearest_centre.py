"""Classifying by the nearest class centre: ``predict: nearest_centre`` of the task.

The logits are minus the Euclidean distances to the class centres of
:class:`lab.tasks.centres.ClassMeans` (``lab.metrics.centroid_logits``), so accuracy,
top-5, per-class accuracy, the confusion matrix and the ROC mean what they mean for a
classifier with a head. During training the centres are the epoch's mean training
embeddings (from the training steps, so with augmentation); at test, the means of the
whole unaugmented training split (the reference split).
"""

from __future__ import annotations

import torch

from lab.metrics import centroid_logits
from lab.tasks.centres import ClassMeans


def nearest_centre_logits(features: torch.Tensor, means: ClassMeans) -> torch.Tensor | None:
    """Scores ``(B, num_classes)``: minus the distance to each centre (classes without
    one score -inf); None before any centres exist (the first training epoch)."""
    if not means.ready:
        return None
    return centroid_logits(features, means.centres, means.present)
