"""Two-class classification with one logit and binary cross-entropy (logistic regression).

The backbone's classifier has one output ``z``; the loss is
``binary_cross_entropy_with_logits(z, y)``. Everything else sees the two-column logits
``[0, z]``: their softmax is ``[1 - sigmoid(z), sigmoid(z)]`` and their argmax is
``z > 0``, so the accuracy metrics, the confusion matrix, ROC and t-SNE callbacks and
``predict`` work unchanged, and binary and two-class softmax models compare directly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError
from lab.tasks.classifier import Classifier


class BinaryClassifier(Classifier):
    """Logistic regression on any backbone: one logit, binary cross-entropy.

    Class 1 (the second class name) is the positive class. ``label_smoothing`` ``s``
    moves the targets to ``s / 2`` and ``1 - s / 2``, as two-class cross-entropy's
    smoothing does.

    Args:
        backbone: the network; its classifier is replaced by a one-output one.
        num_classes: must be 2 (set from the data module by the CLI).
        The rest: see ``Classifier``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 2, **kwargs: Any) -> None:
        if num_classes != 2:
            raise LabError(
                f"BinaryClassifier needs a data set with exactly 2 classes, got {num_classes}; "
                f"use lab.tasks.Classifier for more (e.g. data.init_args.classes: [cat, dog])"
            )
        super().__init__(backbone, num_classes, **kwargs)

    def head_classes(self, num_classes: int) -> int:
        return 1

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[0, z]`` per item, ``(B, 2)``: softmax of it is ``[1 - sigmoid(z), sigmoid(z)]``."""
        z = self.backbone.forward_head(features)
        return torch.cat([torch.zeros_like(z), z], dim=1)

    def objective(
        self, features: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Binary cross-entropy on ``z`` (the task's own loss, not ``model.losses``)."""
        assert logits is not None
        return {"loss": self.loss(logits, targets)}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = (logits[:, 1] - logits[:, 0]).float()
        smoothing = self.label_smoothing
        target = targets.float() * (1.0 - smoothing) + smoothing / 2
        return F.binary_cross_entropy_with_logits(z, target)
