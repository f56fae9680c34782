"""The pooled-feature head that the convolutional backbones (ResNet, VGG) share.

A subclass checks its head settings (``check_head_options``), builds its trunk, gives
``forward_trunk`` (the last feature map) and calls ``build_head``; this class adds what
comes after the trunk, and the feature API:

- ``forward_features(x)``: the trunk's map averaged over its positions, then the
  optional embedding layer (and L2 normalisation), ``(B, num_features)``;
- ``forward_head(features)``: logits from those features;
- ``forward(x)``: logits, or the features when the model has no classifier;
- ``reset_classifier(num_classes)``: a fresh classifier (0 removes it).

Module names: ``embedding``, ``dropout``, ``fc`` (the ``trainable`` policies and the
checkpoints address them by these names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from lab.errors import LabError
from lab.models.backbone import Backbone


def check_head_options(
    num_classes: int, embedding_dim: int | None, dropout: float, head_hidden: list[int] | None
) -> None:
    """Refuse head settings that cannot be built, in one line each."""
    if num_classes < 0:
        raise LabError(f"backbone.num_classes must be >= 0, got {num_classes}")
    if embedding_dim is not None and embedding_dim < 1:
        raise LabError(f"backbone.embedding_dim must be >= 1 or null, got {embedding_dim}")
    if not 0.0 <= dropout < 1.0:
        raise LabError(f"backbone.dropout must be in [0, 1), got {dropout}")
    if any(width < 1 for width in head_hidden or []):
        raise LabError(f"backbone.head_hidden must be positive widths, got {head_hidden}")


class PooledBackbone(Backbone, ABC):
    """A convolutional trunk, average pooling, an optional embedding layer and a classifier.

    Abstract: a subclass that does not define ``forward_trunk`` cannot be instantiated."""

    def build_head(
        self,
        trunk_features: int,
        num_classes: int,
        embedding_dim: int | None,
        normalize_embedding: bool,
        dropout: float,
        head_hidden: list[int] | None,
    ) -> None:
        """Add the embedding layer, the dropout and the classifier after a trunk whose
        pooled vector has ``trunk_features`` values: call ``check_head_options`` before
        building the trunk, this after it."""
        self.embedding = (
            nn.Linear(trunk_features, embedding_dim) if embedding_dim else nn.Identity()
        )
        self.normalize_embedding = normalize_embedding
        self.num_features = embedding_dim or trunk_features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.dropout_rate = dropout
        self.head_hidden = list(head_hidden or [])
        self.add_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one (0: no classifier): a
        linear layer, or an MLP when ``head_hidden`` is set."""
        self.num_classes = num_classes
        if not num_classes:
            self.fc = nn.Identity()
            return
        layers: list[nn.Module] = []
        width = self.num_features
        for hidden in self.head_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if self.dropout_rate > 0:
                layers.append(nn.Dropout(self.dropout_rate))
            width = hidden
        final = nn.Linear(width, num_classes)
        self.fc = nn.Sequential(*layers, final) if layers else final

    @abstractmethod
    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, ``(B, C, H, W)``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled vector (or its embedding), ``(B, num_features)``."""
        # A mean over H, W instead of AdaptiveAvgPool2d: same values, and its backward is
        # deterministic on CUDA (adaptive_avg_pool2d's is not).
        pooled = self.forward_trunk(x).mean(dim=(2, 3))
        features = self.embedding(pooled)
        if self.normalize_embedding:
            features = nn.functional.normalize(features, dim=1)
        return features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from features (the features themselves when there is no classifier)."""
        return self.fc(self.dropout(features))
