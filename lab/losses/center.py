"""Center loss (Wen et al. 2016, "A Discriminative Feature Learning Approach for Deep Face
Recognition"): pulls every feature towards a learned center of its class.

``L_C = 1/2 * mean_i ||x_i - c_{y_i}||^2`` (the paper's 1/2, averaged over the batch), so
``dL/dx_i = (x_i - c_{y_i}) / B``. Used as a term of ``lab.tasks.Classifier`` beside
cross-entropy (``weight`` is the paper's lambda). The centers are parameters with an
optimizer of their own, plain SGD at the paper's rate alpha (``lr``), kept out of the
task's optimizer; before each step their gradient is divided by lambda, so lambda sets
how much the features are pulled to the centers but not how fast the centers move (as in
KaiyangZhou/pytorch-center-loss, whose command-line "alpha" is our ``weight`` and whose
``lr_cent`` is our ``lr``). Each sample's center is picked by a one-hot matrix product
rather than by indexing: indexing's backward scatter-adds in a thread-dependent order on
the CPU, so two identical runs would drift apart; the product is repeatable and, at
O(B * C * D), still negligible beside the network.

Standalone (``loss(features, labels)``): give ``num_classes`` and ``dim`` to the
constructor, or call ``build(num_classes, dim)`` before the first call; inside the task
``build`` is called for you with the backbone's feature size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError
from lab.losses.precision import float32_loss
from lab.losses.term import LossTerm


class CenterLoss(LossTerm):
    """``loss(features (B, D), labels (B,))``: half the mean squared distance to the centers.

    Args:
        weight: lambda, the term's factor in the total loss (>= 0).
        lr: alpha, the centers' own SGD learning rate (> 0).
        num_classes, dim: build the centers now (standalone use); else ``build`` does.
        name: logged as ``train/<name>``; ``center`` by default.
    """

    default_name = "center"

    def __init__(
        self,
        weight: float = 0.1,
        lr: float = 0.5,
        num_classes: int | None = None,
        dim: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(weight, name)
        if lr <= 0:
            raise LabError(f"CenterLoss: lr (alpha, the centers' rate) must be > 0, got {lr}")
        self.lr = lr
        self.num_classes = 0
        self.feat_dim = 0
        self.centers: nn.Parameter | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        if num_classes is not None or dim is not None:
            if num_classes is None or dim is None:
                raise LabError("CenterLoss: give both num_classes and dim, or neither")
            self.build(num_classes, dim)

    def build(self, num_classes: int, feature_dim: int) -> None:
        if num_classes < 2:
            raise LabError(f"center loss needs at least 2 classes, got {num_classes}")
        if feature_dim < 1:
            raise LabError(f"center loss needs a feature dimension >= 1, got {feature_dim}")
        self.num_classes = num_classes
        self.feat_dim = feature_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feature_dim))

    @float32_loss
    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.centers is None:
            raise LabError("CenterLoss: call build(num_classes, dim) first (the task does)")
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(
                f"center loss expects features (B, {self.feat_dim}), got {tuple(features.shape)}"
            )
        one_hot = F.one_hot(labels, self.num_classes).to(self.centers.dtype)
        difference = features - (one_hot @ self.centers).to(features.dtype)
        return 0.5 * difference.pow(2).sum(dim=1).mean()

    def own_parameters(self) -> list[nn.Parameter]:
        return [] if self.centers is None else [self.centers]

    def configure_optimizer(self) -> torch.optim.SGD:
        """Plain SGD over the centers alone at rate ``lr`` (the paper's alpha)."""
        self._optimizer = torch.optim.SGD(self.own_parameters(), lr=self.lr)
        return self._optimizer

    def before_optimizer_step(self, task: Any) -> None:
        """Move the centers: unscale their gradient (AMP), divide it by lambda, step.

        Called once per step of the task's optimizer, after gradient accumulation and
        after the AMP scaler has unscaled the task's gradients (not the centers').
        No host sync: the scale is divided as a tensor, and a step whose gradient is not
        finite (an fp16 overflow, which the scaler skips too) gets a zero gradient,
        which leaves plain SGD's centers exactly where they are.
        """
        if self.centers is None or self.centers.grad is None or self._optimizer is None:
            return
        grad = self.centers.grad
        trainer = getattr(task, "trainer", None)
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        if scaler is not None:
            grad.div_(_scale_tensor(scaler, grad))
        if self.weight > 0:
            grad.div_(self.weight)
        finite = torch.isfinite(grad).all()
        grad.copy_(torch.where(finite, grad, torch.zeros_like(grad)))
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)


def _scale_tensor(scaler: Any, like: torch.Tensor) -> torch.Tensor:
    """The AMP scaler's current scale as a device tensor (``get_scale()`` would sync)."""
    scale = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
    if scale is None:  # not scaling yet, or a scaler without the tensor: no scale
        return like.new_ones(())
    return scale.to(like.device, like.dtype)
