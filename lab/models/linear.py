"""A linear model on flattened images: logistic and softmax regression as a backbone.

The same API as ``lab.models.ResNet`` (``forward_features``, ``forward_head``,
``reset_classifier``, ``num_features``), so ``lab.tasks.Classifier`` trains it as softmax
regression and ``lab.tasks.BinaryClassifier`` as logistic regression (one output). The
"features" are the flattened pixels themselves.
"""

from __future__ import annotations

import torch

from lab.errors import LabError
from lab.models.backbone import Backbone, flat_input_size, flatten_checked


class LinearModel(Backbone):
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
        in_features = flat_input_size("LinearModel", in_features, in_channels, image_size)
        if in_features < 1 or num_classes < 0:
            raise LabError(
                f"LinearModel needs in_features >= 1 and num_classes >= 0, got {in_features} "
                f"and {num_classes}"
            )
        self.num_features = in_features
        self.add_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened input, ``(B, num_features)``."""
        return flatten_checked("LinearModel", x, self.num_features)
