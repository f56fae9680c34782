"""A small STL-10 in its binary format (``stl10_binary``), images stored column-major."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.data.fakes import marked_image
from lab.data.stl10 import CLASSES


def upright_image(label: int, side: int) -> np.ndarray:
    """``marked_image`` plus a white bar along the top-left of the top rows.

    The square corner block alone looks the same transposed; with the bar, a transposed
    read puts white down the left columns instead.
    """
    image = marked_image(label, side, side)
    image[: side // 8, : side // 2] = 255
    return image


def mark_place(image: np.ndarray) -> str:
    """Where the bar of an ``upright_image`` (H, W, 3) lies.

    ``top-left`` when read right, ``top-right`` when mirrored, ``left-top`` when transposed.
    """
    h, w = image.shape[:2]
    white = (image == 255).all(-1)
    places = {"top-left": white[0, 3 * w // 8], "top-right": white[0, w - 1 - 3 * w // 8]}
    places["left-top"] = white[3 * h // 8, 0]
    found = [place for place, is_white in places.items() if is_white]
    return found[0] if len(found) == 1 else f"unclear {found}"


def _write_images(path: Path, labels: list[int]) -> None:
    images = np.stack([upright_image(label, 96) for label in labels])  # (N, H, W, C)
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
