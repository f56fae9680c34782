"""Center loss (Wen et al. 2016, "A Discriminative Feature Learning Approach for Deep Face
Recognition"): pulls every feature towards a learned center of its class.

``L_C = 1/2 * mean_i ||x_i - c_{y_i}||^2`` (the paper's 1/2, averaged over the batch), so
``dL/dx_i = (x_i - c_{y_i}) / B``. The centers are parameters with an optimizer of their
own (plain SGD at the paper's rate alpha); the task that owns this loss keeps them out of
its main optimizer, calls ``rescale_center_grad(lambda)`` and steps ``center_optimizer``:
then the loss weight lambda does not change how fast the centers move (as in
KaiyangZhou/pytorch-center-loss). Each sample's center is picked by a one-hot matrix
product rather than by indexing: indexing's backward scatter-adds in a thread-dependent
order on the CPU, so two identical runs would drift apart; the product is repeatable and,
at O(B * C * D), still negligible beside the network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError


class CenterLoss(nn.Module):
    """``loss(features (B, D), labels (B,))``: half the mean squared distance to the centers.

    Args:
        num_classes: number of classes (one center each).
        feat_dim: dimension of the features.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise LabError(f"center loss needs at least 2 classes, got {num_classes}")
        if feat_dim < 1:
            raise LabError(f"center loss needs a feature dimension >= 1, got {feat_dim}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(
                f"center loss expects features (B, {self.feat_dim}), got {tuple(features.shape)}"
            )
        one_hot = F.one_hot(labels, self.num_classes).to(self.centers.dtype)
        difference = features - (one_hot @ self.centers).to(features.dtype)
        return 0.5 * difference.pow(2).sum(dim=1).mean()

    def rescale_center_grad(self, weight: float) -> None:
        """Divide the centers' gradient by the loss weight (> 0), undoing its effect on
        their speed; a no-op for weight 0 (the centers then get no gradient anyway)."""
        if weight > 0 and self.centers.grad is not None:
            self.centers.grad.div_(weight)

    def center_optimizer(self, lr: float) -> torch.optim.SGD:
        """Plain SGD over the centers alone at rate ``lr`` (the paper's alpha)."""
        if lr <= 0:
            raise LabError(f"the centers' learning rate (alpha) must be > 0, got {lr}")
        return torch.optim.SGD([self.centers], lr=lr)
