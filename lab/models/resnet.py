"""ResNet-18 / ResNet-50 backbones built on torchvision's, with a uniform feature API.

One parameterised class, thin named factories, and the API that classification,
metric learning and transfer learning all need (as in timm):

- ``forward_features(x)``: the pooled vector before the classifier (after the optional
  embedding layer), shape ``(B, num_features)``;
- ``forward_head(features)``: logits from those features;
- ``forward(x)``: logits, or the features when the model has no classifier;
- ``reset_classifier(num_classes)``: a fresh classifier (0 removes it).

``small_input=True`` swaps the 7x7 stride-2 stem and its max-pool for a 3x3 stride-1
conv, the usual choice for 8 to 64 pixel images (CIFAR-style ResNets); without it an
8x8 digit would be 1x1 after the stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import resnet as tv_resnet

from lab.errors import LabError
from lab.models.head import PooledBackbone, check_head_options
from lab.models.weights import (
    is_weights_path,
    load_weights_file,
    normalize_weights,
    torchvision_state_dict,
)

_BUILDERS = {18: tv_resnet.resnet18, 34: tv_resnet.resnet34, 50: tv_resnet.resnet50}


class ResNet(PooledBackbone):
    """A torchvision ResNet trunk with an optional embedding layer and classifier.

    Args:
        depth: 18, 34 or 50 layers.
        num_classes: size of the classifier; 0 for a feature extractor (a task that owns
            its head calls ``reset_classifier``).
        in_channels: 1 (greyscale) or 3 (RGB).
        small_input: 3x3 stride-1 stem without max-pool, for 8 to 64 pixel images.
        embedding_dim: if set, a linear layer from the pooled trunk vector to this many
            dimensions; the features and the classifier then use the embedding.
        normalize_embedding: L2-normalise the features (for metric learning).
        dropout: dropout before the classifier (and between the layers of an MLP head).
        head_hidden: widths of hidden layers of an MLP head (Linear, ReLU, Dropout each)
            before the final linear layer; empty or None for a linear classifier.
        zero_init_residual: start each residual branch at zero (helps from-scratch runs).
        weights: pretrained weights to start from. A torchvision name (``IMAGENET1K_V1``,
            ``IMAGENET1K_V2`` for ResNet-50, or ``DEFAULT``) is downloaded once into the
            torch hub cache (``$TORCH_HOME/hub/checkpoints``, checked against its published
            hash) or read from there if a user put the file there; the data modules then
            normalise with ImageNet's statistics (``data.normalization: auto``). With a
            1000-way classifier (``num_classes=1000``) ImageNet's classifier is kept too.
            A path loads a file of our own: a ``lab`` checkpoint (``.ckpt``, its
            ``backbone.*`` weights) or a state dict saved with ``torch.save``; every trunk
            weight must be in it, a classifier of another size is left out. With one
            input channel the RGB filters of the stem are summed; a small-input stem is new
            (its 3x3 filters cannot come from the 7x7 ones). Files are read with
            ``weights_only=True`` (``lab.models.weights``): one that holds more than
            tensors and plain data is refused, so nothing in it can run.
    """

    def __init__(
        self,
        depth: Literal[18, 34, 50] = 18,
        num_classes: int = 0,
        in_channels: int = 3,
        small_input: bool = False,
        embedding_dim: int | None = None,
        normalize_embedding: bool = False,
        dropout: float = 0.0,
        head_hidden: list[int] | None = None,
        zero_init_residual: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in _BUILDERS:
            raise ValueError(f"ResNet depth must be one of {sorted(_BUILDERS)}, got {depth}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        check_head_options(num_classes, embedding_dim, dropout, head_hidden)
        trunk = _BUILDERS[depth](weights=None, zero_init_residual=zero_init_residual)
        if small_input or in_channels != 3:
            kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
            trunk.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
            nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
        if small_input:
            trunk.maxpool = nn.Identity()
        weights = normalize_weights(weights)
        imagenet_fc = None
        if weights is not None and not is_weights_path(weights):
            imagenet_fc = load_pretrained(trunk, depth, weights)
        self.weights = weights
        # Keep torchvision's module names (conv1, bn1, layer1..layer4) so that layer-wise
        # freezing policies and activation hooks can address them by name.
        self.conv1, self.bn1, self.relu, self.maxpool = (
            trunk.conv1,
            trunk.bn1,
            trunk.relu,
            trunk.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )
        self.build_head(
            trunk.fc.in_features,
            num_classes,
            embedding_dim,
            normalize_embedding,
            dropout,
            head_hidden,
        )
        if imagenet_fc is not None and self.fc_fits(imagenet_fc):
            self.fc.load_state_dict(imagenet_fc)
        if weights is not None and is_weights_path(weights):
            load_weights_file(self, Path(weights))

    def fc_fits(self, state: dict[str, torch.Tensor]) -> bool:
        """Whether a classifier state dict (``weight``, ``bias``) fits ``fc`` as it is."""
        own = self.fc.state_dict()
        return own.keys() == state.keys() and all(own[k].shape == v.shape for k, v in state.items())

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, ``(B, C, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_pretrained(
    trunk: tv_resnet.ResNet, depth: int, weights: str
) -> dict[str, torch.Tensor] | None:
    """Load torchvision's ``weights`` (by name) into ``trunk`` in place, fc excluded;
    returns ImageNet's classifier (``weight``, ``bias``)."""
    enum = get_model_weights(f"resnet{depth}")
    if weights not in enum.__members__:
        raise LabError(
            f"backbone.weights={weights!r} is not a torchvision ResNet-{depth} weight; "
            f"expected one of {sorted(enum.__members__)}"
        )
    chosen = enum[weights]
    state = torchvision_state_dict(chosen)
    fc = {k.removeprefix("fc."): v for k, v in state.items() if k.startswith("fc.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    stem = state["conv1.weight"]
    if trunk.conv1.weight.shape != stem.shape:
        if trunk.conv1.weight.shape == (64, 1, *stem.shape[2:]):
            state["conv1.weight"] = stem.sum(dim=1, keepdim=True)  # greyscale = R + G + B
        else:
            del state["conv1.weight"]  # a small-input stem keeps its fresh initialisation
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"conv1.weight", "fc.weight", "fc.bias"}:
        raise LabError(f"{chosen} does not fit ResNet-{depth}: {missing} {unexpected}")
    return fc or None


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (11.2M parameters with a 1000-way classifier)."""
    return ResNet(depth=18, **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (25.6M parameters with a 1000-way classifier)."""
    return ResNet(depth=50, **kwargs)
