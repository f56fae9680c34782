"""Pairwise contrastive loss (Hadsell, Chopra & LeCun 2006) as a loss term: the worked
example of docs/contributing.md ("Add a loss": this file, its test and a YAML).

Every pair of the batch counts: a positive pair (same class) is pulled within
``pos_margin``, a negative pair pushed beyond ``neg_margin``, on Euclidean distances.
The loss itself is pytorch-metric-learning's ``ContrastiveLoss``; this class only says
what the task must give it (the features, not the logits; any batches with repeated
classes) and computes it in float32.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance

from lab.errors import LabError
from lab.losses.precision import float32_loss
from lab.losses.term import LossTerm


class PairwiseContrastiveLoss(LossTerm):
    """``loss(embeddings (B, D), labels (B,))``: the mean over the pairs of
    ``relu(d - pos_margin)`` (positives) and ``relu(neg_margin - d)`` (negatives) that
    are not already zero, positive and negative pairs each (pytorch-metric-learning's
    default reduction), on plain Euclidean distances.

    Args:
        weight: the term's factor in the total loss (>= 0).
        pos_margin: distance under which a positive pair costs nothing (>= 0).
        neg_margin: distance beyond which a negative pair costs nothing (> pos_margin).
        name: logged as ``train/<name>``; ``contrastive`` by default.
    """

    default_name = "contrastive"

    def __init__(
        self,
        weight: float = 1.0,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight, name)
        if not 0.0 <= pos_margin < neg_margin:
            raise LabError(
                f"PairwiseContrastiveLoss: need 0 <= pos_margin < neg_margin, "
                f"got {pos_margin} and {neg_margin}"
            )
        # Plain Euclidean distances (pml normalises the embeddings by default; a backbone
        # with normalize_embedding does that here).
        distance = LpDistance(normalize_embeddings=False)
        self.loss = losses.ContrastiveLoss(
            pos_margin=pos_margin, neg_margin=neg_margin, distance=distance
        )

    @float32_loss
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels)
