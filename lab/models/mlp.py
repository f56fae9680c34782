"""A multilayer perceptron on flattened images, built to be pretrained one layer at a time.

The encoder is a ``ModuleList`` of blocks ``Linear -> [BatchNorm1d] -> activation ->
[Dropout]``, one per hidden width, so that ``lab.tasks.LayerwisePretrainedClassifier``
can train block k as the encoder of an autoencoder on the codes of blocks 1..k-1. The
same API as ``lab.models.ResNet`` (``forward_features``, ``forward_head``,
``reset_classifier``, ``num_features``), plus ``code`` and ``forward_from`` to enter and
leave the stack at any layer.

Layers are counted from 1: ``code(x, k)`` is the output of the first k blocks
(``widths[k]`` values), ``code(x, 0)`` the flattened input (``widths[0]``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lab.errors import LabError
from lab.models.backbone import Backbone, flat_input_size, flatten_checked

Activation = Literal["relu", "sigmoid", "tanh", "gelu", "leaky_relu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(Backbone):
    """Flatten, a stack of hidden layers, and a linear classifier on the last one.

    Args:
        hidden: widths of the hidden layers, e.g. ``[1024, 1000, 500, 256, 128, 64]``.
        in_features: length of a flattened input; None computes it as
            ``in_channels * image_size ** 2``.
        in_channels: channels of the input images (with ``image_size``).
        image_size: square side of the input images (with ``in_channels``).
        num_classes: outputs of the classifier; 0 leaves it out (the task sets it).
        activation: the nonlinearity after every hidden layer.
        batch_norm: BatchNorm1d between each hidden linear layer and its activation.
        dropout: dropout after every hidden layer's activation.
    """

    def __init__(
        self,
        hidden: list[int],
        in_features: int | None = None,
        in_channels: int = 3,
        image_size: int | None = None,
        num_classes: int = 0,
        activation: Activation = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_features = flat_input_size("MLP", in_features, in_channels, image_size)
        hidden = list(hidden)
        if not hidden or min(hidden) < 1 or in_features < 1:
            raise LabError(
                f"MLP needs at least one hidden layer and positive widths, got in_features="
                f"{in_features}, hidden={hidden}"
            )
        if activation not in _ACTIVATIONS:
            raise LabError(
                f"MLP.activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if not 0.0 <= dropout < 1.0 or num_classes < 0:
            raise LabError(
                f"MLP needs dropout in [0, 1) and num_classes >= 0, got {dropout}, {num_classes}"
            )
        self.widths = [in_features, *hidden]
        self.encoder_layers = nn.ModuleList()
        for width_in, width_out in zip(self.widths[:-1], self.widths[1:], strict=True):
            block: list[nn.Module] = [nn.Linear(width_in, width_out)]
            if batch_norm:
                block.append(nn.BatchNorm1d(width_out))
            block.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                block.append(nn.Dropout(dropout))
            self.encoder_layers.append(nn.Sequential(*block))
        self.in_features = in_features
        self.num_features = hidden[-1]
        self.add_classifier(num_classes)

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.encoder_layers)

    def check_layer(self, layer: int) -> int:
        """``layer`` if it is 0..depth, else a LabError."""
        if not 0 <= layer <= self.depth:
            raise LabError(f"the MLP has layers 0..{self.depth} (0: the input), got {layer}")
        return layer

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """The input as ``(B, in_features)``."""
        return flatten_checked("MLP", x, self.in_features)

    def code(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """The output of the first ``layer`` hidden layers, ``(B, widths[layer])``."""
        h = self.flatten(x)
        for block in self.encoder_layers[: self.check_layer(layer)]:
            h = block(h)
        return h

    def forward_from(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """The last hidden code from the code of ``layer`` (the layers after it)."""
        for block in self.encoder_layers[self.check_layer(layer) :]:
            h = block(h)
        return h

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden code, ``(B, num_features)``."""
        return self.code(x, self.depth)
