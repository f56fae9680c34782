"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

For every anchor in the batch: its farthest positive and its nearest negative, on plain
(not squared) Euclidean distances; the loss is ``relu(d_ap - d_an + margin)`` or, with
``soft_margin``, ``softplus(d_ap - d_an)``, averaged over the anchors that have both a
positive and a negative. Vectorised over the batch: one ``(B, B)`` matrix product.

Checked against a brute-force loop and against pytorch-metric-learning's
``BatchHardMiner`` + ``TripletMarginLoss`` (tests/test_losses.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(B, B)`` from one matrix product, clamped at 0."""
    squared = embeddings.pow(2).sum(dim=1)
    gram = embeddings @ embeddings.T
    return (squared.unsqueeze(0) + squared.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient where ``x == 0``."""
    zero = x == 0
    return torch.sqrt(x.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, B)``, with a finite gradient where a distance is 0."""
    return safe_sqrt(squared_distances(embeddings))


class BatchHardTripletLoss(nn.Module):
    """``loss(embeddings (B, D), labels (B,))``: the batch-hard triplet loss, a scalar.

    Args:
        margin: the hinge's margin (> 0); unused with ``soft_margin``.
        soft_margin: ``softplus(d_ap - d_an)`` instead of the hinge.

    After each call, ``last_active_fraction`` holds the share of the valid anchors whose
    triplet still violates the margin (a detached tensor: logging it costs no sync).
    """

    def __init__(self, margin: float = 0.2, soft_margin: bool = False) -> None:
        super().__init__()
        if not soft_margin and margin <= 0:
            raise LabError(f"model.margin must be > 0 (or use soft_margin), got {margin}")
        self.margin = margin
        self.soft_margin = soft_margin
        self.last_active_fraction = torch.tensor(0.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The hardest pairs are chosen on squared distances (the root is monotonic), and
        # only those 2B distances are rooted: no (B, B) square root and its backward.
        distances = squared_distances(embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        negative = ~same
        # Farthest positive: non-positives count as 0 (distances are >= 0). Nearest
        # negative: non-negatives count as +inf.
        hardest_positive = distances.masked_fill(~positive, 0.0).amax(dim=1)
        hardest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            self.last_active_fraction = embeddings.new_zeros(()).detach()
            return embeddings.sum() * 0.0  # keeps the graph: backward gives zero gradients
        gap = safe_sqrt(hardest_positive[valid]) - safe_sqrt(hardest_negative[valid])
        losses = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        violated = gap > 0 if self.soft_margin else gap + self.margin > 0
        self.last_active_fraction = violated.float().mean().detach()
        return losses.mean()
