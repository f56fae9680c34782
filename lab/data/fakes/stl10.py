"""A small STL-10 in its binary format (``stl10_binary``), images stored column-major."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.data.fakes import marked_image
from lab.data.stl10 import CLASSES


def _write_images(path: Path, labels: list[int]) -> None:
    images = np.stack([marked_image(label, 96, 96) for label in labels])  # (N, H, W, C)
    # The real files hold each channel column-major: (N, C, W, H) in C order.
    images.transpose(0, 3, 2, 1).astype(np.uint8).tofile(path)


def write_stl10(
    root: Path, per_class_train: int = 6, per_class_test: int = 2, unlabeled: int = 12
) -> Path:
    """Write train/test X and y, unlabelled X, class names and folds; return the folder."""
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = [c for c in range(10) for _ in range(per_class)]
        np.random.default_rng(len(split)).shuffle(labels)
        _write_images(folder / f"{split}_X.bin", labels)
        (np.array(labels, dtype=np.uint8) + 1).tofile(folder / f"{split}_y.bin")
    _write_images(folder / "unlabeled_X.bin", [i % 10 for i in range(unlabeled)])
    (folder / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    n_train = 10 * per_class_train
    folds = [" ".join(str(i) for i in range(f, n_train, 10)) for f in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    return folder
