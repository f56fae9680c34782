"""The three-layer CNN of the Dogs-vs-Cats optimizer studies (seed 002, question 3).

The source asks for "a three-layer CNN" and gives no shape; this is the plainest one:
three blocks of 3x3 convolution, ReLU and 2x2 max-pooling (16, 32, 64 channels), a global
average pool and a linear classifier. No batch normalisation by default, so that the
optimizers, batch sizes and betas being compared are what shapes the training (and batch
size 1 needs nothing special). The same API as ``lab.models.ResNet``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lab.errors import LabError
from lab.models.backbone import Backbone


class SmallCNN(Backbone):
    """Conv-ReLU-MaxPool blocks, global average pooling and a linear classifier.

    Args:
        num_classes: size of the classifier; 0 for a feature extractor.
        in_channels: channels of the input images.
        channels: output channels of each convolutional block (three by default).
        kernel_size: side of the (odd) convolution kernels; padding keeps the size.
        batch_norm: batch normalisation after each convolution.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 0,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if not channels or min(channels) < 1 or in_channels < 1:
            raise LabError(
                f"SmallCNN needs positive in_channels and channels, got {in_channels}, {channels}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise LabError(f"SmallCNN.kernel_size must be odd and positive, got {kernel_size}")
        if not 0.0 <= dropout < 1.0 or num_classes < 0:
            raise LabError(
                f"SmallCNN needs dropout in [0, 1) and num_classes >= 0, got {dropout}, "
                f"{num_classes}"
            )
        blocks: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            blocks += [
                nn.Conv2d(previous, width, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = width
        self.body = nn.Sequential(*blocks)
        self.in_channels = in_channels
        self.num_features = previous
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.add_classifier(num_classes)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``(B, channels[-1], H / 2**blocks, W / 2**blocks)``."""
        return self.body(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally average-pooled last feature map, ``(B, num_features)``."""
        return self.forward_trunk(x).mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from features (the features themselves when there is no classifier)."""
        return self.fc(self.dropout(features))
