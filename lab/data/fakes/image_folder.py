"""A small image folder of the kind users bring: class sub-folders of images of mixed
sizes, modes and formats (RGB and CMYK JPEG; greyscale, RGBA and palette PNG).

Class ``k`` is ``PALETTE[k]`` (greyscale images: its luma) with a white top-left mark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lab.data.fakes import marked_image

# (PIL mode, file suffix): every mode a folder of photos and scans tends to hold.
MODES = (("RGB", ".jpg"), ("L", ".png"), ("RGBA", ".png"), ("CMYK", ".jpg"), ("P", ".png"))


def write_image_folder(
    folder: Path,
    classes: tuple[str, ...] = ("ant", "bee", "cat"),
    per_class: int = 10,
    splits: tuple[str, ...] = (),
    seed: int = 0,
) -> Path:
    """Write ``per_class`` images per class and return ``folder``.

    Args:
        folder: the image folder.
        classes: the class folder names (class ``k`` drawn in ``PALETTE[k]``).
        per_class: images of each class (in each split folder).
        splits: split folders to write (e.g. ``("train", "test")``): ``folder/<split>/<class>/``;
            none: ``folder/<class>/``.
        seed: for the sizes (20x16 to 60x50 pixels).
    """
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for label, name in enumerate(classes):
            target = Path(folder) / split / name
            target.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                mode, suffix = MODES[i % len(MODES)]
                width, height = int(rng.integers(20, 61)), int(rng.integers(16, 51))
                image = Image.fromarray(marked_image(label, height, width))
                if mode == "P":
                    image = image.quantize(colors=4)
                else:
                    image = image.convert(mode)
                image.save(target / f"{i}{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    return Path(folder)
