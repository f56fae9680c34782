"""A plain CNN of Conv-(BN)-ReLU blocks, each ending in a 2x2 max-pool.

Two uses: the three-layer CNN of the Dogs-vs-Cats optimizer studies (seed 002, question
3; the source gives no shape, so the plainest one: blocks of one 3x3 convolution, 16, 32
and 64 channels, no batch normalisation, so that the optimizers, batch sizes and betas
being compared are what shapes the training, and batch size 1 needs nothing special),
and the CPU backbone of the Fashion-MNIST recipe, where a block may hold several
convolutions (a block is a list of widths: ``channels: [16, [32, 32], [96, 96], 192]``).

After the blocks, as in ``lab.models.ResNet``: a global average pool, an optional
embedding layer, dropout and a classifier, with the same feature API.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lab.errors import LabError
from lab.models.head import PooledBackbone, check_head_options
from lab.models.weights import load_weights_file


def _blocks(channels: Sequence[int | Sequence[int]]) -> list[list[int]]:
    """``channels`` as a list of blocks, each a list of convolution widths."""
    blocks = [[block] if isinstance(block, int) else list(block) for block in channels]
    if not blocks or any(not block or min(block) < 1 for block in blocks):
        raise LabError(
            "SmallCNN.channels must be a non-empty list of positive widths (a list of widths "
            f"for a block of several convolutions), got {list(channels)}"
        )
    return blocks


class SmallCNN(PooledBackbone):
    """Blocks of Conv-(BN)-ReLU ending in a 2x2 max-pool, then the pooled-feature head.

    Module names: ``body`` (the blocks), ``embedding``, ``dropout``, ``fc``; so the
    ``trainable`` policies ``all``, ``head``, ``classifier``, ``conv`` and ``bn`` apply.

    Args:
        num_classes: size of the classifier; 0 for a feature extractor.
        in_channels: channels of the input images.
        channels: one entry per block: a width (one convolution) or a list of widths
            (that many convolutions, then the pool).
        kernel_size: side of the (odd) convolution kernels; padding keeps the size.
        batch_norm: batch normalisation after each convolution (the convolutions then
            have no bias).
        dropout: dropout before the classifier.
        embedding_dim: if set, a linear layer from the pooled vector to this many
            dimensions; the features and the classifier then use the embedding.
        normalize_embedding: L2-normalise the features (for metric learning).
        head_hidden: widths of hidden layers of an MLP head before the final linear layer.
        weights: a path to a ``lab`` checkpoint (``.ckpt``, its ``backbone.*`` weights) or
            a state dict saved with ``torch.save``, read with ``weights_only=True``; every
            weight of the blocks must be in it with the same shape, a classifier or
            embedding of another size is left out.
    """

    def __init__(
        self,
        num_classes: int = 0,
        in_channels: int = 3,
        channels: Sequence[int | Sequence[int]] = (16, 32, 64),
        kernel_size: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
        embedding_dim: int | None = None,
        normalize_embedding: bool = False,
        head_hidden: list[int] | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        blocks = _blocks(channels)
        if in_channels < 1:
            raise LabError(f"SmallCNN needs positive in_channels, got {in_channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise LabError(f"SmallCNN.kernel_size must be odd and positive, got {kernel_size}")
        check_head_options(num_classes, embedding_dim, dropout, head_hidden)
        layers: list[nn.Module] = []
        previous = in_channels
        for block in blocks:
            for width in block:
                layers += [
                    nn.Conv2d(
                        previous, width, kernel_size, padding=kernel_size // 2, bias=not batch_norm
                    ),
                    nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
                    nn.ReLU(inplace=True),
                ]
                previous = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.weights = weights
        self.build_head(
            previous, num_classes, embedding_dim, normalize_embedding, dropout, head_hidden
        )
        if weights is not None:
            load_weights_file(
                self, Path(weights), hint="the same channels, in_channels and batch_norm"
            )

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``(B, last width, H / 2**blocks, W / 2**blocks)``."""
        return self.body(x)
