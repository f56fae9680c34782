"""STL-10 from its binary files: 5,000 labelled train, 8,000 test, 100,000 unlabelled.

The images are stored column-major (each 3 x 96 x 96 image is written transposed): they
are memory-mapped and viewed with axes (N, W, H, C) swapped, so nothing is transposed
wrongly and the 2.7 GB unlabelled split is never loaded whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader
from torchvision.datasets import STL10

from lab.data.images import ArrayDataset, ImageDataModule, InDataRoot
from lab.errors import LabError

CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SIDE = 96


def read_images(path: Path) -> np.ndarray:
    """uint8 ``(N, 96, 96, 3)`` view of an STL-10 ``*_X.bin`` file (memory-mapped)."""
    size = path.stat().st_size
    if size == 0 or size % (3 * SIDE * SIDE):
        raise LabError(
            f"{path} is {size} bytes, not a whole number of 3x96x96 images: "
            f"delete the folder and download again (--data.init_args.download=true)"
        )
    raw = np.memmap(
        path, dtype=np.uint8, mode="r", shape=(size // (3 * SIDE * SIDE), 3, SIDE, SIDE)
    )
    return raw.transpose(0, 3, 2, 1)  # column-major on disk: (N, C, W, H) -> (N, H, W, C)


def read_labels(path: Path) -> np.ndarray:
    """int64 labels 0..9 of an STL-10 ``*_y.bin`` file (stored as 1..10)."""
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise LabError(f"{path} holds labels outside 1..10")
    return labels


class STL10DataModule(InDataRoot, ImageDataModule):
    """STL-10 under ``<root>/stl10_binary/``, with the unlabelled split as its own loader.

    Args:
        val_fraction: share of the 5,000 labelled training images held out for validation.
        verify: check the files' md5 against the published ones.
        download: download and extract the archive (with its md5) in ``prepare_data``.
        Others: see ``ImageDataModule`` (``channels=1`` for greyscale, ``image_size``).
    """

    dataset_name = "stl10"
    folder_name = STL10.base_folder

    def __init__(
        self,
        val_fraction: float = 0.1,
        verify: bool = True,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.verify = verify
        self.download = download
        self.num_classes = 10
        self.class_names = list(CLASSES)
        self._unlabeled_file: ArrayDataset | None = None  # the 100,000, read when asked

    def _how_to_get(self) -> str:
        return self.unpack_hint("STL-10's binary files", "stl10_binary.tar.gz")

    def prepare_data(self) -> None:
        if self.download:
            STL10(str(self.root), split="train", download=True)

    def _files(self, split: str) -> tuple[Path, Path | None]:
        listed = STL10.train_list if split in ("train", "unlabeled") else STL10.test_list
        wanted = [tuple(f) for f in listed if f[0].startswith(split)]
        self.check_files(self.data_dir, wanted, self.verify, self._how_to_get())
        y = self.data_dir / f"{split}_y.bin"
        return self.data_dir / f"{split}_X.bin", (y if split != "unlabeled" else None)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        x_file, y_file = self._files(split)
        images, labels = read_images(x_file), read_labels(y_file)
        if len(images) != len(labels):
            raise LabError(f"{x_file} holds {len(images)} images but {y_file} {len(labels)} labels")
        return images, labels

    def unlabeled_dataloader(self) -> DataLoader:
        """The 100,000 unlabelled images, shuffled, items ``(image, -1)``, train transform
        (a DataLoader even with ``device_data``: 2.7 GB is not worth holding on the device)."""
        if self.labelled_per_class is not None:  # the labelled images' own unlabelled split
            return super().unlabeled_dataloader()
        if self._unlabeled_file is None:
            x_file, _ = self._files("unlabeled")
            images = read_images(x_file)
            labels = np.full(len(images), -1, dtype=np.int64)
            self._unlabeled_file = ArrayDataset(images, labels, None, self.train_transform)
        return self._loader(self._unlabeled_file, "unlabeled", train=True)
