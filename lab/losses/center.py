"""Center loss (Wen et al. 2016, "A Discriminative Feature Learning Approach for Deep Face
Recognition"): pulls every feature towards a learned center of its class.

``L_C = 1/2 * mean_i ||x_i - c_{y_i}||^2`` (the paper's 1/2, averaged over the batch), so
``dL/dx_i = (x_i - c_{y_i}) / B``. The centers are parameters with an optimizer of their
own (plain SGD at the paper's rate alpha); the task that owns this loss keeps them out of
its main optimizer, calls ``rescale_center_grad(lambda)`` and steps ``center_optimizer``:
then the loss weight lambda does not change how fast the centers move (as in
KaiyangZhou/pytorch-center-loss). Computed by gathering each sample's center: O(B * D),
not the O(B * C * D) of a full distance matrix.
"""

from __future__ import annotations

import torch
from torch import nn

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
        difference = features - self.centers[labels].to(features.dtype)
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
