"""VGG backbones (with or without BatchNorm) for small images, with the ResNet feature API.

The convolutional stages are torchvision's (those of ``vgg16_bn().features``: five
stages, each ending in a 2x2 max-pool, so a 32x32 image leaves them as 512 x 1 x 1);
their output is averaged over the remaining positions into a 512-d vector, then an
optional embedding layer and a classifier follow, as in ``lab.models.ResNet``:

- ``forward_features(x)``: that vector (or the embedding), ``(B, num_features)``;
- ``forward_head(features)``: logits from those features;
- ``forward(x)``: logits, or the features when the model has no classifier;
- ``reset_classifier(num_classes)``: a fresh classifier (0 removes it).

Torchvision's 224-pixel head (adaptive pooling to 7x7 and three 4096-wide layers) is left
out: on a 32x32 input the map is already 1x1, and the source's encoder (seed 004) pooled
that 1x1 map to 7x7 — 49 copies of the same 512 values — before its linear layer to
``z_dim``, which is the same family of functions as one linear layer on the 512 values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import vgg as tv_vgg

from lab.errors import LabError
from lab.models.head import PooledBackbone, check_head_options
from lab.models.weights import (
    is_weights_path,
    load_weights_file,
    normalize_weights,
    torchvision_state_dict,
)

DEPTHS = (11, 13, 16, 19)
_CONFIGS = {11: tv_vgg.cfgs["A"], 13: tv_vgg.cfgs["B"], 16: tv_vgg.cfgs["D"], 19: tv_vgg.cfgs["E"]}


class VGG(PooledBackbone):
    """A torchvision VGG trunk with an optional embedding layer and classifier.

    Module names: ``features`` (torchvision's convolutional stages), ``embedding``,
    ``dropout``, ``fc``; so the ``trainable`` policies ``all``, ``head``, ``classifier``,
    ``conv`` and ``bn`` apply (``lab.models.freeze``).

    Args:
        depth: 11, 13, 16 or 19 layers.
        batch_norm: BatchNorm after every convolution (torchvision's ``vgg*_bn``).
        in_channels: 1 (greyscale) or 3 (RGB).
        num_classes: size of the classifier; 0 for a feature extractor (a task that owns
            its head calls ``reset_classifier``).
        embedding_dim: if set, a linear layer from the pooled 512-d vector to this many
            dimensions (the contrastive encoder's ``z_dim``); the features and the
            classifier then use the embedding.
        normalize_embedding: L2-normalise the features.
        head_hidden: widths of hidden layers of an MLP head (Linear, ReLU, Dropout each)
            before the final linear layer; empty or None for a linear classifier.
        dropout: dropout before the classifier (and between the layers of an MLP head).
        weights: weights to start from. A torchvision name (``IMAGENET1K_V1`` or
            ``DEFAULT``; only ``vgg16_bn``, ``vgg11`` .. ``vgg19`` and their ``_bn``
            forms have them) loads ImageNet's convolutional stages. A path loads a file
            of our own: a ``lab`` checkpoint (``.ckpt``, its ``backbone.*`` weights) or a
            state dict saved with ``torch.save``. Every weight of the convolutional
            stages *and of the embedding layer* must be in it with the same shape (the
            embedding is what a contrastive run learned); a classifier of another size
            is left out. Files are read with ``weights_only=True``
            (``lab.models.weights``): nothing in them can run.
    """

    def __init__(
        self,
        depth: Literal[11, 13, 16, 19] = 16,
        batch_norm: bool = True,
        in_channels: int = 3,
        num_classes: int = 0,
        embedding_dim: int | None = None,
        normalize_embedding: bool = False,
        head_hidden: list[int] | None = None,
        dropout: float = 0.0,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise LabError(f"backbone.depth must be one of {DEPTHS} for a VGG, got {depth}")
        if in_channels not in (1, 3):
            raise LabError(f"backbone.in_channels must be 1 or 3, got {in_channels}")
        check_head_options(num_classes, embedding_dim, dropout, head_hidden)
        self.arch = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
        # torchvision's stages without its 224-pixel classifier (120M parameters to
        # initialise for nothing), initialised as torchvision's VGG does.
        features = tv_vgg.make_layers(_CONFIGS[depth], batch_norm=batch_norm)
        if in_channels != 3:
            features[0] = nn.Conv2d(in_channels, features[0].out_channels, 3, padding=1)
        _init_like_torchvision(features)
        weights = normalize_weights(weights)
        if weights is not None and not is_weights_path(weights):
            load_pretrained_features(features, self.arch, weights)
        self.weights = weights
        self.depth = depth
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        self.features = features
        self.build_head(512, num_classes, embedding_dim, normalize_embedding, dropout, head_hidden)
        if weights is not None and is_weights_path(weights):
            load_weights_file(
                self,
                Path(weights),
                optional=("fc",),
                hint="the same depth, batch_norm, in_channels and embedding_dim",
            )

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, ``(B, 512, H / 32, W / 32)``."""
        return self.features(x)


def _init_like_torchvision(features: nn.Sequential) -> None:
    """The initialisation of ``torchvision.models.VGG``'s convolutional stages."""
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


def load_pretrained_features(features: nn.Sequential, arch: str, weights: str) -> None:
    """Load torchvision's ``weights`` (by name) for ``arch`` into its convolutional
    stages in place; ImageNet's 224-pixel classifier is not used."""
    enum = get_model_weights(arch)
    if weights not in enum.__members__:
        raise LabError(
            f"backbone.weights={weights!r} is not a torchvision {arch} weight; expected one "
            f"of {sorted(enum.__members__)} or a path to a lab checkpoint"
        )
    chosen = enum[weights]
    state = torchvision_state_dict(chosen)
    state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    stem = state["0.weight"]
    if features[0].weight.shape != stem.shape:  # greyscale: R + G + B
        state["0.weight"] = stem.sum(dim=1, keepdim=True)
    missing, unexpected = features.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LabError(f"{chosen} does not fit {arch}: {missing} {unexpected}")


def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BatchNorm (14.7M parameters in its convolutional stages)."""
    return VGG(depth=16, batch_norm=True, **kwargs)
