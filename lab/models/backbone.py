"""The feature API every ``lab`` backbone has, and the input checks of the flat ones.

Like timm's models: ``forward_features(x)`` gives ``(B, num_features)``,
``forward_head(features)`` the logits (the features themselves without a classifier),
``forward(x)`` both in turn, and ``reset_classifier(num_classes)`` a fresh classifier
``fc`` (0 removes it). ``lab.tasks`` train any module with this API.
"""

from __future__ import annotations

import torch
from torch import nn

from lab.errors import LabError


class Backbone(nn.Module):
    """Base of the backbones: a linear classifier ``fc`` after ``forward_features``.

    A subclass sets ``num_features``, then calls ``add_classifier(num_classes)``, and
    defines ``forward_features``; it may override ``reset_classifier`` (another head) and
    ``forward_head`` (e.g. dropout first).
    """

    num_features: int
    num_classes: int

    def add_classifier(self, num_classes: int) -> None:
        """Register ``fc`` (so that it is named ``fc`` in the state dict) and build it."""
        self.num_classes = 0
        self.fc: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised linear layer (0: none)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The features, ``(B, num_features)``."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_features")

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from features (the features themselves when there is no classifier)."""
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def flat_input_size(
    owner: str, in_features: int | None, in_channels: int, image_size: int | None
) -> int:
    """The length of a flattened input: ``in_features``, or ``in_channels * image_size**2``;
    a LabError (naming ``owner``) when neither is given or the two disagree."""
    from_image = in_channels * image_size**2 if image_size is not None else None
    if in_features is None and from_image is None:
        raise LabError(f"{owner} needs in_features, or image_size (and in_channels) to compute it")
    if in_features is not None and from_image is not None and in_features != from_image:
        raise LabError(
            f"{owner}: in_features={in_features} but in_channels * image_size**2 = "
            f"{from_image}; set one of them"
        )
    return in_features if in_features is not None else from_image


def flatten_checked(owner: str, x: torch.Tensor, in_features: int) -> torch.Tensor:
    """``x`` as ``(B, in_features)``; a LabError (naming ``owner``) if its size differs."""
    flat = x.flatten(1)
    if flat.shape[1] != in_features:
        raise LabError(
            f"{owner} expects inputs of {in_features} values, got {tuple(x.shape[1:])} = "
            f"{flat.shape[1]}; set its in_features (or in_channels and image_size) to match "
            f"the data"
        )
    return flat
