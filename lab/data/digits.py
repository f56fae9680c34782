"""The embedded default data: scikit-learn's ``load_digits`` (1,797 real 8x8 digits).

Ships inside scikit-learn, so it needs no download; it lets every command, test and
demo run on real handwritten images on a laptop CPU in minutes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from lab.data.base import LabDataModule, stratified_split
from lab.errors import LabError


class DigitsDataModule(LabDataModule):
    """Digits 0-9 as image tensors, split train / val / test (seeded, stratified).

    Pixels (0..16) are scaled to [0, 1] and standardised with the train split's mean and
    standard deviation.

    Args:
        val_fraction: share of all images held out for validation.
        test_fraction: share of all images held out for testing.
        channels: 1 (greyscale) or 3 (the grey value repeated, for RGB backbones).
        image_size: side length; 8 is native, larger sizes are bilinear upsampling.
        batch_size, eval_batch_size, num_workers, seed, pin_memory, pk_classes,
            pk_samples, shuffle, device_data: see ``LabDataModule``, which takes all but
            the first two from here (the digits have no augmentation: ``device_data``
            keeps the normalised images on the device).
    """

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        channels: int = 1,
        image_size: int = 8,
        batch_size: int = 64,
        eval_batch_size: int | None = 512,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, **kwargs)
        if channels not in (1, 3):
            raise LabError(f"data.channels must be 1 or 3, got {channels}")
        if image_size < 8:
            raise LabError(f"data.image_size must be >= 8 (the native size), got {image_size}")
        if not (
            0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise LabError(
                "data.val_fraction and data.test_fraction must be in (0, 1) and sum to less "
                f"than 1, got {val_fraction} and {test_fraction}"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.channels = channels
        self.image_size = image_size
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]
        self.split_indices: dict[str, np.ndarray] = {}

    def _images(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(pixels.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
        if self.image_size != 8:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x.expand(-1, self.channels, -1, -1).contiguous()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        digits = load_digits()
        labels = digits.target.astype(np.int64)
        rest, test = stratified_split(labels, self.test_fraction, self.seed)
        val_share = self.val_fraction / (1.0 - self.test_fraction)
        train_pos, val_pos = stratified_split(labels[rest], val_share, self.seed)
        train, val = rest[train_pos], rest[val_pos]
        self.split_indices = {"train": train, "val": val, "test": test}

        images = self._images(digits.data)
        mean, std = images[train].mean(), images[train].std()
        images = (images - mean) / std
        targets = torch.from_numpy(labels)
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(images[idx], targets[idx]) for idx in (train, val, test)
        )
        self.reference_set = self.train_set  # no augmentation to switch off
