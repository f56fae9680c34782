"""Small data sets written in exactly the real on-disk formats, for tests and benchmarks.

Each writer draws every class in its own colour (plus an orientation mark), so a test
can check labels against image content. Nothing here is used by real runs.
"""

import numpy as np

# Ten well-separated colours, none near white (white is the orientation mark).
PALETTE = np.array(
    [
        (220, 20, 20),
        (20, 220, 20),
        (20, 20, 220),
        (220, 220, 20),
        (220, 20, 220),
        (20, 220, 220),
        (120, 60, 0),
        (0, 120, 60),
        (60, 0, 120),
        (100, 100, 100),
    ],
    dtype=np.uint8,
)


def marked_image(label: int, height: int, width: int) -> np.ndarray:
    """uint8 ``(H, W, 3)``: the class colour with a white block in the top-left corner only."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = PALETTE[label % len(PALETTE)]
    image[: height // 4, : width // 4] = 255
    return image


def colour_label(image: np.ndarray) -> int:
    """The class whose colour is nearest to the bottom-right quarter of an (H, W, 3) image."""
    h, w = image.shape[:2]
    mean = image[h // 2 :, w // 2 :].reshape(-1, 3).astype(float).mean(0)
    return int(np.argmin(((PALETTE.astype(float) - mean) ** 2).sum(1)))
