"""Class centres of the training embeddings, kept right under DDP.

:class:`ClassMeans` sums each class's training embeddings over an epoch and, at the
start of validation, turns the sums of every process into centres (the class means).

- The running sums and counts are plain tensor attributes, not buffers: DDP broadcasts
  every buffer from rank 0 at each forward, which would overwrite every other
  process's sums with rank 0's.
- The all-reduce works on a *copy* of the sums: a second validation within one epoch
  (``val_check_interval < 1``) reduces the same local sums again instead of sums that
  already hold every process's.
- The centres and which classes have one (``centres``, ``present``) are buffers: they
  travel with the checkpoint. ``ready`` is a Python flag (no ``bool(tensor)`` sync):
  True once centres were set or loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ClassMeans(nn.Module):
    """Per-epoch class sums of training embeddings and the centres made from them.

    Args:
        num_classes: number of classes.
        dim: embedding size.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("centres", torch.zeros(num_classes, dim))
        self.register_buffer("present", torch.zeros(num_classes, dtype=torch.bool))
        self.ready = False
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the running sums (at the start of a training epoch)."""
        self._sums = self._counts = None

    def update(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a training batch's embeddings ``(B, dim)`` to their classes' sums."""
        features = features.detach().float()
        if self._sums is None or self._counts is None:
            self._sums = features.new_zeros(self.centres.shape)
            self._counts = features.new_zeros(self.num_classes)
        self._sums.index_add_(0, targets, features)
        self._counts += torch.bincount(targets, minlength=self.num_classes)

    def publish(self, strategy: Any = None) -> bool:
        """Make the centres from the sums of every process (``strategy.reduce``, a sum);
        False, and the centres kept, when no training batch was seen since ``reset``."""
        if self._sums is None or self._counts is None:
            return False
        sums, counts = self._sums.clone(), self._counts.clone()
        if strategy is not None:
            sums = strategy.reduce(sums, reduce_op="sum")
            counts = strategy.reduce(counts, reduce_op="sum")
        self.set(sums / counts.clamp(min=1).unsqueeze(1), counts > 0)
        return True

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Set the centres to the class means of a whole split (the reference split)."""
        features = features.float()
        sums = torch.zeros_like(self.centres, dtype=features.dtype).index_add_(0, targets, features)
        counts = torch.bincount(targets, minlength=self.num_classes).to(sums.dtype)
        self.set(sums / counts.clamp(min=1).unsqueeze(1), counts > 0)

    def set(self, centres: torch.Tensor, present: torch.Tensor) -> None:
        self.centres.copy_(centres)
        self.present.copy_(present)
        self.ready = True

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        # Loading a checkpoint happens once, outside the training loop: a sync is fine.
        self.ready = bool(self.present.any())
