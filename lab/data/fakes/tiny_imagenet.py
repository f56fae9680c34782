"""A small Tiny ImageNet in the real on-disk format (``tiny-imagenet-200/``).

Like the real archive: ``wnids.txt`` in no particular order, ``words.txt`` naming more
wnids than the data set uses (with comma-separated synonyms), ``train/<wnid>/images/``
with a ``<wnid>_boxes.txt`` beside, one flat ``val/images/`` folder whose labels are
only in ``val/val_annotations.txt`` (lines in shuffled order), unlabelled
``test/images/``, and some greyscale (mode ``L``) JPEGs. The class with label ``k`` (the
k-th wnid in sorted order) is drawn in ``class_colour(k)``, so tests can check labels
against content; with ``noise=True`` the images are textured instead, for benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = "tiny-imagenet-200"
SIZE = 64
# Distinct hues and distinct lumas, so a greyscale image still tells its class.
PALETTE = [
    (220, 40, 40),
    (40, 200, 60),
    (40, 60, 220),
    (230, 210, 40),
    (200, 60, 210),
    (40, 200, 210),
    (250, 250, 250),
    (20, 20, 20),
]


def class_colour(label: int) -> tuple[int, int, int]:
    """The solid colour of the class with this label (index in the sorted wnids)."""
    if label < len(PALETTE):
        return PALETTE[label]
    rng = np.random.default_rng(label)
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def grey_of(colour: tuple[int, int, int]) -> float:
    """What a colour becomes in a greyscale JPEG (ITU-R 601-2 luma, as PIL converts)."""
    red, green, blue = colour
    return 0.299 * red + 0.587 * green + 0.114 * blue


def _image(label: int, rng: np.random.Generator, noise: bool, grey: bool) -> Image.Image:
    pixels = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    pixels[:] = class_colour(label)
    if noise:
        # Coarse blobs plus fine grain: compresses like a photo (a few KB), unlike flat colour.
        coarse = rng.normal(0, 50, size=(8, 8, 3)).repeat(SIZE // 8, 0).repeat(SIZE // 8, 1)
        pixels += coarse + rng.normal(0, 15, size=pixels.shape)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    return image.convert("L") if grey else image


def write_tiny_imagenet(
    root: Path,
    num_classes: int = 4,
    train_per_class: int = 6,
    val_per_class: int = 2,
    test_images: int = 2,
    greyscale: int = 1,
    noise: bool = False,
    seed: int = 0,
) -> Path:
    """Write a small Tiny ImageNet under ``root`` and return its ``tiny-imagenet-200`` folder.

    Args:
        root: the data root.
        num_classes: classes listed in ``wnids.txt``.
        train_per_class, val_per_class: labelled images of each class.
        test_images: unlabelled images in ``test/images``.
        greyscale: how many JPEGs are saved in mode ``L``: the first train image of each
            of the first ``greyscale`` classes (sorted order).
        noise: textured images (for benchmarks) instead of flat colours.
        seed: for the wnids, the orders and the noise.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / FOLDER
    numbers = rng.choice(10**8, size=num_classes + 5, replace=False)
    all_wnids = [f"n{n:08d}" for n in numbers]
    wnids = all_wnids[:num_classes]
    ordered = sorted(wnids)
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    names = [f"{w}\tthing {k}, alias {k}, other\n" for k, w in enumerate(all_wnids)]
    (base / "words.txt").write_text("".join(names[i] for i in rng.permutation(len(names))))

    for label, wnid in enumerate(ordered):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        boxes = []
        for i in range(train_per_class):
            name = f"{wnid}_{i}.JPEG"
            grey = label < greyscale and i == 0
            _image(label, rng, noise, grey).save(folder / name, quality=90)
            boxes.append(f"{name}\t0\t0\t{SIZE - 1}\t{SIZE - 1}\n")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))

    val = base / "val" / "images"
    val.mkdir(parents=True, exist_ok=True)
    items = rng.permutation([k for k in range(num_classes) for _ in range(val_per_class)])
    lines = []
    for number, label in enumerate(items.tolist()):
        name = f"val_{number}.JPEG"
        _image(label, rng, noise, False).save(val / name, quality=90)
        lines.append(f"{name}\t{ordered[label]}\t1\t2\t{SIZE - 2}\t{SIZE - 3}\n")
    annotations = "".join(lines[i] for i in rng.permutation(len(lines)))
    (base / "val" / "val_annotations.txt").write_text(annotations)

    test = base / "test" / "images"
    test.mkdir(parents=True, exist_ok=True)
    for number in range(test_images):
        label = int(rng.integers(num_classes))
        _image(label, rng, noise, False).save(test / f"test_{number}.JPEG", quality=90)
    return base
