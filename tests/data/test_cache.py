"""The decoded-image cache: same pixels as decoding, built once, rebuilt when stale."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

import lab.data.cache as cache
from lab.data.cache import decode_image, decoded_images
from lab.errors import LabError, WriteError


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(12):
        path = tmp_path / "img" / f"{i:02d}.jpg"
        path.parent.mkdir(exist_ok=True)
        size = (40 + 3 * i, 30 + 2 * i)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        files.append(path)
    grey = tmp_path / "img" / "grey.jpg"
    Image.fromarray(np.full((20, 20), 200, np.uint8), mode="L").save(grey)
    return [*files, grey]


def test_cache_equals_direct_decoding_and_greyscale_becomes_rgb(images, tmp_path):
    array = decoded_images(images, tmp_path / "c.npy", size=(32, 24))
    assert array.shape == (13, 24, 32, 3) and array.dtype == np.uint8
    for row, path in zip(array, images, strict=True):
        np.testing.assert_array_equal(row, decode_image(path, (32, 24)))
    assert (array[-1] == 200).all()


def test_second_use_reads_the_cache_without_decoding(images, tmp_path, monkeypatch):
    first = np.array(decoded_images(images, tmp_path / "c.npy", size=(16, 16)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode_image", no_decoding)
    again = decoded_images(images, tmp_path / "c.npy", size=(16, 16))
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)


def test_changed_source_or_settings_rebuild(images, tmp_path):
    decoded_images(images, tmp_path / "c.npy", size=(16, 16))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images[0])
    os.utime(images[0], ns=(1, 1))  # a different mtime even on a coarse clock
    rebuilt = decoded_images(images, tmp_path / "c.npy", size=(16, 16))
    assert rebuilt[0].max() < 10
    grey = decoded_images(images, tmp_path / "c.npy", size=(16, 16), channels=1)
    assert grey.shape == (13, 16, 16, 1)
    fewer = decoded_images(images[:5], tmp_path / "c.npy", size=(16, 16))
    assert fewer.shape[0] == 5


def test_a_corrupt_cache_file_is_rebuilt(images, tmp_path):
    target = tmp_path / "c.npy"
    good = np.array(decoded_images(images, target, size=(16, 16)))
    target.write_bytes(target.read_bytes()[:100])  # truncated, as by a full disk
    np.testing.assert_array_equal(decoded_images(images, target, size=(16, 16)), good)


def test_an_interrupted_build_leaves_nothing_to_trust(images, tmp_path, monkeypatch):
    target = tmp_path / "c.npy"
    real = cache.decode_image

    def fail_on_fifth(path, *args, **kwargs):
        if path == images[4]:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache, "decode_image", fail_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        decoded_images(images, target, size=(16, 16), workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]
    monkeypatch.setattr(cache, "decode_image", real)
    assert decoded_images(images, target, size=(16, 16)).shape[0] == 13


def test_a_corrupt_image_names_the_file(images, tmp_path):
    images[3].write_bytes(b"not a jpeg at all")
    with pytest.raises(LabError, match="03.jpg"):
        decoded_images(images, tmp_path / "c.npy", size=(16, 16))
    assert not (tmp_path / "c.npy").exists()


def test_a_full_cache_root_is_one_write_error_before_any_decoding(images, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(WriteError) as raised:
        decoded_images(images, tmp_path / "cache" / "c.npy", size=(16, 16))
    assert str(raised.value).startswith(f"no space left on device while writing {tmp_path}")
    assert "free space or set --data.init_args.cache_dir" in str(raised.value)
    assert list((tmp_path / "cache").iterdir()) == []  # no temporary file, no fingerprint


def test_the_blocks_of_the_cache_are_reserved_before_decoding(images, tmp_path, monkeypatch):
    reserved = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda *a: (reserved.append(a[2]), real(*a)))
    array = decoded_images(images, tmp_path / "c.npy", size=(16, 8))
    assert reserved == [(tmp_path / "c.npy").stat().st_size] and array.shape == (13, 8, 16, 3)
