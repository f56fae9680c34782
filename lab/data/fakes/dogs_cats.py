"""A small Dogs vs Cats in the real on-disk format: JPEGs of varied sizes.

Cats are orange and dogs blue, each with a white square in the top-left corner (so a
transposed or flipped image is detectable), written as ``<root>/dogs-vs-cats/train/``
in Kaggle's flat layout (``cat.N.jpg``) or as ``cat/`` and ``dog/`` class folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"cat": (230, 120, 30), "dog": (40, 80, 220)}


def fake_image(colour: tuple[int, int, int], width: int, height: int) -> Image.Image:
    """A flat ``colour`` image with a white mark in its top-left corner."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[: height // 4, : width // 4] = 255
    return Image.fromarray(pixels)


def write_dogs_cats(root: Path, per_class: int = 10, layout: str = "kaggle", seed: int = 0) -> Path:
    """Write ``per_class`` cats and dogs (50x40 to 120x90 pixels) and return the train folder.

    Args:
        root: the data root (the images go to ``root/dogs-vs-cats/train``).
        per_class: images of each class.
        layout: ``kaggle`` (``cat.N.jpg``, ``dog.N.jpg``) or ``folders`` (``cat/N.jpg``).
        seed: for the image sizes.
    """
    if layout not in ("kaggle", "folders"):
        raise ValueError(f"layout must be 'kaggle' or 'folders', got {layout!r}")
    rng = np.random.default_rng(seed)
    train = Path(root) / "dogs-vs-cats" / "train"
    for name, colour in COLOURS.items():
        folder = train / name if layout == "folders" else train
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = int(rng.integers(50, 121)), int(rng.integers(40, 91))
            file = folder / (f"{i}.jpg" if layout == "folders" else f"{name}.{i}.jpg")
            fake_image(colour, width, height).save(file, quality=90)
    return train
