"""Cross-entropy as a loss term: the default objective of ``lab.tasks.Classifier``."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from lab.errors import LabError
from lab.losses.precision import float32_loss
from lab.losses.term import LossTerm


class CrossEntropy(LossTerm):
    """``loss(logits (B, C), targets (B,))``: cross-entropy (``torch.nn.functional``).

    Args:
        weight: the term's factor in the total loss (>= 0).
        label_smoothing: in [0, 1); None takes the task's ``model.label_smoothing``
            (so a recipe's smoothing applies to the cross-entropy term of every
            experiment built on it).
        name: logged as ``train/<name>``; ``ce`` by default.
    """

    default_name = "ce"
    uses_logits = True

    def __init__(
        self, weight: float = 1.0, label_smoothing: float | None = None, name: str | None = None
    ) -> None:
        super().__init__(weight, name)
        if label_smoothing is not None and not 0.0 <= label_smoothing < 1.0:
            raise LabError(
                f"CrossEntropy: label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing

    @float32_loss
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing or 0.0)
