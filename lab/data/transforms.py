"""Image transforms shared by every image data module, set from YAML.

Images travel as uint8 ``(C, H, W)`` tensors (decoded once, see ``lab.data.cache``);
the transform converts channels, resizes, augments (train only), then scales to float
and normalises. torchvision's v2 transforms do the work.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.transforms import v2

from lab.errors import LabError

Stats = tuple[tuple[float, ...], tuple[float, ...]]

# Per-channel mean and std of each data set's training images (RGB, in [0, 1]).
DATASET_STATS: dict[str, Stats] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    # Greyscale sets: the grey value in all three channels (so their luma is the same).
    "fashion_mnist": ((0.2860,) * 3, (0.3530,) * 3),
    "mnist": ((0.1307,) * 3, (0.3081,) * 3),
}
_GREY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision convert


def channel_stats(stats: Stats, channels: int) -> Stats:
    """The stats for 1 or 3 channels (greyscale: the luma-weighted mean of the RGB stats)."""
    mean, std = stats
    if channels == 3:
        return mean, std
    grey_mean = sum(w * m for w, m in zip(_GREY, mean, strict=True))
    grey_std = sum(w * s for w, s in zip(_GREY, std, strict=True))
    return (grey_mean,), (grey_std,)


def image_transform(
    *,
    train: bool,
    channels: int,
    image_size: int | None,
    stats: Stats | None,
    crop_padding: int = 0,
    hflip: float = 0.0,
    rotation: float = 0.0,
) -> v2.Compose:
    """uint8 ``(C, H, W)`` image -> normalised float tensor, with train-time augmentation.

    Args:
        train: apply the augmentation (random crop with padding, flip, rotation).
        channels: 1 (greyscale, luma) or 3 (greyscale inputs are repeated).
        image_size: square output side; None keeps the stored size.
        stats: (mean, std) for ``channels`` channels; None leaves values in [0, 1].
        crop_padding: pad by this much (reflect) and crop back at a random place.
        hflip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (uniform in [-rotation, rotation]).
    """
    if channels not in (1, 3):
        raise LabError(f"channels must be 1 or 3, got {channels}")
    if not 0.0 <= hflip <= 1.0:
        raise LabError(f"hflip is a probability in [0, 1], got {hflip}")
    if crop_padding < 0 or rotation < 0:
        raise LabError(f"crop_padding and rotation must be >= 0, got {crop_padding}, {rotation}")
    ops: list[torch.nn.Module] = [v2.Grayscale(1) if channels == 1 else v2.RGB()]
    if image_size is not None:
        ops.append(v2.Resize((image_size, image_size), antialias=True))
    if train:
        if crop_padding:
            size = image_size
            ops.append(_PadCrop(crop_padding, size))
        if hflip:
            ops.append(v2.RandomHorizontalFlip(hflip))
        if rotation:
            ops.append(v2.RandomRotation(rotation))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if stats is not None:
        ops.append(v2.Normalize(*stats))
    return v2.Compose(ops)


class _PadCrop(torch.nn.Module):
    """Reflect-pad then crop back to the input size at a random place (CIFAR-style).

    The crop size is the configured image size, or else each input's own size; one
    RandomCrop is kept per size rather than built per image.
    """

    def __init__(self, padding: int, size: int | None) -> None:
        super().__init__()
        self.padding, self.size = padding, size
        self._crops: dict[tuple[int, int], v2.RandomCrop] = {}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = (self.size, self.size) if self.size else tuple(image.shape[-2:])
        crop = self._crops.get(size)
        if crop is None:
            crop = self._crops[size] = v2.RandomCrop(
                size, padding=self.padding, padding_mode="reflect"
            )
        return crop(image)


Normalization = Literal["auto", "dataset", "imagenet", "none"]


def pick_stats(normalization: Normalization, dataset: str, channels: int) -> Stats | None:
    """Resolve the ``normalization`` option of a data module to (mean, std) or None.

    ``auto`` is resolved by ``lab`` (the CLI) to ``imagenet`` when the backbone starts from
    torchvision's ImageNet weights, else to ``dataset``; here (no model known) it is
    ``dataset``.
    """
    if normalization == "none":
        return None
    if normalization not in ("auto", "dataset", "imagenet"):
        raise LabError(
            f"normalization must be 'auto', 'dataset', 'imagenet' or 'none', got {normalization!r}"
        )
    key = "imagenet" if normalization == "imagenet" else dataset
    return channel_stats(DATASET_STATS[key], channels)
