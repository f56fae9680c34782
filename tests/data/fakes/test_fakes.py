"""``lab.data.fakes``: each class's colour is read back from its marked image, which every
fixture-based test relies on to check labels against image content."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.fakes import PALETTE, colour_label, marked_image


@pytest.mark.parametrize("label", range(len(PALETTE)))
def test_the_colour_of_a_marked_image_gives_its_label_back(label: int):
    image = marked_image(label, 8, 12)
    assert image.shape == (8, 12, 3) and image.dtype == np.uint8
    assert colour_label(image) == label
    assert (image[:2, :3] == 255).all()  # the orientation mark: the top-left corner only
    assert (image[4:, 6:] == PALETTE[label]).all()


def test_labels_past_the_palette_wrap_around():
    assert colour_label(marked_image(len(PALETTE) + 3, 8, 8)) == 3
