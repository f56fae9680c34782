"""``lab.commands.svm.features``: the features a backbone gives, and their cache."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lab.commands.svm.features import cache_file, cached_features, extract_features
from lab.errors import LabError, WriteError
from lab.models import ResNet

# -- features and their cache ------------------------------------------------------------------


def test_extracted_features_are_the_eval_mode_outputs_in_loader_order():
    torch.manual_seed(0)
    backbone = ResNet(depth=18, small_input=True, num_classes=5).train()
    images = torch.randn(10, 3, 8, 8)
    labels = torch.tensor([3, 1, 4, 1, 0, 2, 3, 4, 0, 2])
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    features, targets = extract_features(backbone, loader, "penultimate", "cpu")
    logits, _ = extract_features(backbone, loader, "logits", "cpu")
    assert not backbone.training
    with torch.no_grad():
        expected = backbone.forward_features(images)
        expected_logits = backbone(images)
    assert features.shape == (10, 512) and features.dtype == np.float32
    assert logits.shape == (10, 5)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, expected_logits.numpy(), rtol=1e-4, atol=1e-5)
    assert targets.tolist() == labels.tolist() and targets.dtype == np.int64
    # The raw-pixel baseline: the images the backbone is given, flattened, in loader order.
    pixels, pixel_targets = extract_features(backbone, loader, "pixels", "cpu")
    np.testing.assert_array_equal(pixels, images.flatten(1).numpy())
    assert pixel_targets.tolist() == labels.tolist()

    with pytest.raises(LabError, match="num_classes"):
        extract_features(ResNet(depth=18, small_input=True), loader, "logits", "cpu")


def _cache_case(tmp_path: Path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"12345678")
    calls: list[int] = []
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)).astype(np.float32), np.arange(7, dtype=np.int64)

    def compute():
        calls.append(1)
        return x, y

    return source, calls, compute, (x, y)


def test_cached_features_are_reused_until_the_settings_or_the_files_change(tmp_path: Path):
    source, calls, compute, (x, y) = _cache_case(tmp_path)
    cache = tmp_path / "cache"
    settings = {"layer": "penultimate", "split": "train", "backbone": {"depth": 50}}

    first = cached_features(settings, [source], cache, compute)
    second = cached_features(dict(settings), [source], cache, compute)
    assert len(calls) == 1
    for got in (first, second):
        assert np.array_equal(got[0], x) and np.array_equal(got[1], y)
        assert got[0].dtype == np.float32 and got[1].dtype == np.int64

    cached_features({**settings, "layer": "logits"}, [source], cache, compute)
    assert len(calls) == 2  # other settings: another file
    assert len(list(cache.glob("*.npz"))) == 2

    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    cached_features(settings, [source], cache, compute)
    assert len(calls) == 3  # a newer source file
    cached_features(settings, [source], cache, compute)
    assert len(calls) == 3

    mtime = source.stat().st_mtime_ns
    source.write_bytes(b"123456789")
    os.utime(source, ns=(mtime, mtime))  # the same time, another size
    cached_features(settings, [source], cache, compute)
    assert len(calls) == 4
    assert not list(cache.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong arrays"])
def test_an_unreadable_cache_file_is_recomputed_with_a_warning(tmp_path: Path, damage: str):
    source, calls, compute, (x, y) = _cache_case(tmp_path)
    cache = tmp_path / "cache"
    settings = {"split": "test"}
    cached_features(settings, [source], cache, compute)
    path = cache_file(settings, [source], cache)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        with open(path, "wb") as handle:
            np.savez(handle, features=np.zeros((3, 2)), labels=np.zeros(4))
    with pytest.warns(UserWarning, match="cannot be read"):
        features, labels = cached_features(settings, [source], cache, compute)
    assert len(calls) == 2
    assert np.array_equal(features, x) and np.array_equal(labels, y)
    cached_features(settings, [source], cache, compute)  # repaired: read back, no warning
    assert len(calls) == 2
    assert not list(cache.glob("*.tmp"))


def test_a_failed_computation_leaves_no_cache_file(tmp_path: Path):
    source, _, _, _ = _cache_case(tmp_path)

    def fail():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cached_features({"split": "val"}, [source], tmp_path / "cache", fail)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_full_cache_root_is_a_write_error_naming_the_cache_option(tmp_path, monkeypatch):
    source, _, compute, _ = _cache_case(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError, match=r"\.npz .*: free space or set --cache_dir$"):
        cached_features({"split": "val"}, [source], tmp_path / "cache", compute)
    assert not any((tmp_path / "cache").iterdir())
