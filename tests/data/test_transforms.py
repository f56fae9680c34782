import pytest
import torch

from lab.data.transforms import DATASET_STATS, channel_stats, image_transform, pick_stats
from lab.errors import LabError


def constant(value: int, channels: int = 3, size: int = 8) -> torch.Tensor:
    return torch.full((channels, size, size), value, dtype=torch.uint8)


def test_eval_transform_scales_and_normalises():
    stats = ((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    out = image_transform(train=False, channels=3, image_size=None, stats=stats)(constant(255))
    assert out.dtype == torch.float32 and out.shape == (3, 8, 8)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


@pytest.mark.parametrize("given,wanted", [(1, 3), (3, 1), (3, 3), (1, 1)])
def test_channels_are_converted(given, wanted):
    t = image_transform(train=False, channels=wanted, image_size=16, stats=None)
    out = t(constant(128, channels=given))
    assert out.shape == (wanted, 16, 16)
    torch.testing.assert_close(out, torch.full_like(out, 128 / 255), atol=1 / 255, rtol=0)


def test_greyscale_uses_luma_weights():
    rgb = torch.zeros(3, 4, 4, dtype=torch.uint8)
    rgb[1] = 255  # pure green
    out = image_transform(train=False, channels=1, image_size=None, stats=None)(rgb)
    assert out.mean().item() == pytest.approx(0.587, abs=0.01)


def test_train_augmentation_flips_and_keeps_size():
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[:, :, 0] = 255  # bright left column
    flip = image_transform(train=True, channels=3, image_size=None, stats=None, hflip=1.0)
    assert flip(image)[:, :, -1].min() == 1.0 and flip(image)[:, :, 0].max() == 0.0
    noisy = image_transform(
        train=True, channels=3, image_size=12, stats=None, crop_padding=2, rotation=15
    )
    assert noisy(image).shape == (3, 12, 12)
    plain = image_transform(train=False, channels=3, image_size=None, stats=None, hflip=1.0)
    assert plain(image)[:, :, 0].min() == 1.0  # no augmentation at evaluation


def test_pad_crop_shifts_content_by_at_most_the_padding():
    torch.manual_seed(0)
    image = torch.zeros(1, 16, 16, dtype=torch.uint8)
    image[0, 8, 8] = 255
    t = image_transform(train=True, channels=1, image_size=None, stats=None, crop_padding=2)
    for _ in range(20):
        out = t(image)[0]
        y, x = divmod(int(out.argmax()), 16)
        assert abs(y - 8) <= 2 and abs(x - 8) <= 2


def test_stats_for_greyscale_and_choices():
    mean, std = channel_stats(DATASET_STATS["cifar10"], 1)
    assert len(mean) == len(std) == 1 and 0.45 < mean[0] < 0.5
    assert pick_stats("none", "cifar10", 3) is None
    assert pick_stats("imagenet", "cifar10", 3) == DATASET_STATS["imagenet"]
    with pytest.raises(LabError, match="normalization"):
        pick_stats("zscore", "cifar10", 3)


@pytest.mark.parametrize("kwargs", [{"channels": 2}, {"hflip": 1.5}, {"crop_padding": -1}], ids=str)
def test_bad_options_raise(kwargs):
    options = {"train": True, "channels": 3, "image_size": None, "stats": None, **kwargs}
    with pytest.raises(LabError):
        image_transform(**options)
