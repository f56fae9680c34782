"""Random erasing (Zhong et al. 2017) as a data module option, per image on both data paths.

The DataLoader path appends torchvision's ``v2.RandomErasing`` (one image at a time,
after normalisation, so the erased box is the mean colour: 0). The device path
(``device_data``) erases whole batches on the device with the same distribution: each
image, with probability ``p``, gets one box of area ``scale`` of the image and aspect
ratio log-uniform in ``ratio``, at a uniform place; as torchvision, up to 10 box shapes
are drawn and the first that fits is used (an image where none fits is left whole).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torchvision.transforms import v2

from lab.data.device_loader import DeviceBatchLoader, augmentation_seed
from lab.errors import LabError

SCALE = (0.02, 0.33)
RATIO = (0.3, 3.3)
ATTEMPTS = 10


def check_probability(p: float) -> float:
    """``p`` if it is a probability, else a LabError naming the option."""
    if not 0.0 <= p <= 1.0:
        raise LabError(f"data.erasing is a probability in [0, 1], got {p}")
    return p


def erasing_transform(p: float) -> v2.RandomErasing:
    """torchvision's per-image random erasing with the defaults of the paper, value 0."""
    return v2.RandomErasing(p=p, scale=SCALE, ratio=RATIO, value=0)


def erase_boxes(
    n: int, height: int, width: int, p: float, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top, left, box_height, box_width)``, int ``(n,)`` each; a box of height 0 means
    the image is not erased (not drawn, or no shape fitted in ``ATTEMPTS`` tries)."""
    shape = (n, ATTEMPTS)
    area = height * width
    scale = torch.empty(shape, device=device).uniform_(*SCALE, generator=generator)
    log_ratio = torch.empty(shape, device=device).uniform_(
        math.log(RATIO[0]), math.log(RATIO[1]), generator=generator
    )
    ratio = log_ratio.exp()
    box_h = (scale * area * ratio).sqrt().round().long()
    box_w = (scale * area / ratio).sqrt().round().long()
    fits = (box_h < height) & (box_w < width) & (box_h > 0) & (box_w > 0)
    first = fits.long().argmax(dim=1)  # the first shape that fits (0 if none does)
    rows = torch.arange(n, device=device)
    box_h, box_w = box_h[rows, first], box_w[rows, first]
    drawn = torch.rand(n, device=device, generator=generator) < p
    keep = drawn & fits.any(dim=1)
    box_h, box_w = box_h * keep, box_w * keep
    # A uniform top-left corner among the places the box fits: [0, size - box].
    top = (torch.rand(n, device=device, generator=generator) * (height - box_h + 1)).long()
    left = (torch.rand(n, device=device, generator=generator) * (width - box_w + 1)).long()
    return top, left, box_h, box_w


def erase(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    box_h: torch.Tensor,
    box_w: torch.Tensor,
    value: float = 0.0,
) -> torch.Tensor:
    """``images`` ``(N, C, H, W)`` with each image's box set to ``value`` (all channels)."""
    _, _, height, width = images.shape
    rows = torch.arange(height, device=images.device)[None, :]
    cols = torch.arange(width, device=images.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return images.masked_fill(mask, value)


class ErasingBatchLoader:
    """A ``DeviceBatchLoader`` whose batches are randomly erased (seeded per epoch).

    Everything else (length, ``sampler.set_epoch``, ``batch_sampler``) is the wrapped
    loader's, so Lightning treats it as it treats that loader.
    """

    def __init__(self, loader: DeviceBatchLoader, p: float) -> None:
        self.loader, self.p = loader, check_probability(p)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self.loader
        device = loader.device
        generator = torch.Generator(device=device)
        # A stream of its own (seed + 1), apart from the loader's crop and flip draws.
        seed = augmentation_seed(loader.seed + 1, loader.sampler.epoch, loader.rank)
        generator.manual_seed(seed)
        for images, labels in loader:
            n, _, height, width = images.shape
            boxes = erase_boxes(n, height, width, self.p, generator, device)
            yield erase(images, *boxes), labels


class RandomErasingOption:
    """Mixin for an ``ImageDataModule``: the ``erasing`` probability on both data paths.

    Call ``_add_erasing(p)`` at the end of ``__init__`` (after the base built the
    transforms).
    """

    erasing: float = 0.0

    def _add_erasing(self, p: float) -> None:
        self.erasing = check_probability(p)
        if p:
            self.train_transform.transforms.append(erasing_transform(p))

    def train_dataloader(self):  # noqa: ANN201 - a DataLoader or a device loader
        loader = super().train_dataloader()
        if self.device_data and self.erasing:
            return ErasingBatchLoader(loader, self.erasing)
        return loader
