"""A small MNIST / Fashion-MNIST in the real IDX format, gzipped or plain.

Each class is a flat grey level (``grey_level(label)``) with a white block in the
top-left corner, so a test can tell labels from image content and see a transposed or
flipped image. Written where torchvision puts the files (``<root>/<Name>/raw/``) or into
any folder (as the Debian package's).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from lab.data.idx import FILES, UBYTE


def grey_level(label: int) -> int:
    """The grey value of class ``label``'s images (20, 40, ..., 200)."""
    return 20 + 20 * label


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as the bytes of an IDX file: magic, dimensions, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def fake_images(labels: np.ndarray, size: int = 28) -> np.ndarray:
    """uint8 ``(N, size, size)``: each label's grey level, a white top-left mark."""
    images = np.empty((len(labels), size, size), dtype=np.uint8)
    images[:] = np.asarray([grey_level(int(k)) for k in labels], dtype=np.uint8)[:, None, None]
    images[:, : size // 4, : size // 4] = 255
    return images


def write_idx(
    root: Path,
    name: str = "FashionMNIST",
    per_class_train: int = 10,
    per_class_test: int = 2,
    gzipped: bool = True,
    folder: Path | None = None,
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """Write the four IDX files and return their folder.

    Args:
        root: the data root; the files go to ``root/<name>/raw`` unless ``folder`` is set.
        name: torchvision's class name (``FashionMNIST`` or ``MNIST``): the folder name.
        per_class_train, per_class_test: images of each class in each split (shuffled).
        gzipped: write ``*.gz`` files (as published) or plain ones (as torchvision
            leaves them extracted).
        folder: write into this folder instead.
        num_classes: classes 0..num_classes-1.
        seed: of the order of the labels.
    """
    target = Path(folder) if folder is not None else Path(root) / name / "raw"
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(num_classes, dtype=np.uint8), per_class)
        rng.shuffle(labels)
        for kind, array in (("images", fake_images(labels)), ("labels", labels)):
            content = idx_bytes(array)
            path = target / FILES[(split, kind)]
            if gzipped:
                with gzip.open(target / f"{path.name}.gz", "wb") as handle:
                    handle.write(content)
            else:
                path.write_bytes(content)
    return target
