"""A linear model on flattened images: logistic and softmax regression as a backbone.

The same API as ``lab.models.ResNet`` (``forward_features``, ``forward_head``,
``reset_classifier``, ``num_features``), so ``lab.tasks.Classifier`` trains it as softmax
regression and ``lab.tasks.BinaryClassifier`` as logistic regression (one output). The
"features" are the flattened pixels themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from lab.errors import LabError


class LinearModel(nn.Module):
    """Flatten, then one linear layer (with bias): ``logits = W x + b``.

    Args:
        in_features: length of a flattened input; None computes it as
            ``in_channels * image_size ** 2``.
        num_classes: outputs of the linear layer; 0 leaves it out (the task sets it).
        in_channels: channels of the input images (with ``image_size``).
        image_size: square side of the input images (with ``in_channels``).
    """

    def __init__(
        self,
        in_features: int | None = None,
        num_classes: int = 0,
        in_channels: int = 3,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        from_image = in_channels * image_size**2 if image_size is not None else None
        if in_features is None and from_image is None:
            raise LabError(
                "LinearModel needs in_features, or image_size (and in_channels) to compute it"
            )
        if in_features is not None and from_image is not None and in_features != from_image:
            raise LabError(
                f"LinearModel: in_features={in_features} but in_channels * image_size**2 = "
                f"{from_image}; set one of them"
            )
        in_features = in_features if in_features is not None else from_image
        if in_features < 1 or num_classes < 0:
            raise LabError(
                f"LinearModel needs in_features >= 1 and num_classes >= 0, got {in_features} "
                f"and {num_classes}"
            )
        self.num_features = in_features
        self.num_classes = 0
        self.fc: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer with a freshly initialised one (0: none)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened input, ``(B, num_features)``."""
        flat = x.flatten(1)
        if flat.shape[1] != self.num_features:
            raise LabError(
                f"LinearModel expects inputs of {self.num_features} values, got "
                f"{tuple(x.shape[1:])} = {flat.shape[1]}; set its in_features (or "
                f"in_channels and image_size) to match the data"
            )
        return flat

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (the features themselves when there is no linear layer)."""
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
