"""Dogs vs Cats' own checks (the shared ones are in test_contract.py): both layouts, file
order, the 70:30 split, statistics, the cache and the errors of a bad folder."""

from pathlib import Path

import numpy as np
import pytest
import torch

import lab.data.cache
from lab.data.cache import decode_image, source_cache_dir
from lab.data.dogs_cats import DogsCatsDataModule
from lab.data.fakes.dogs_cats import write_dogs_cats
from lab.errors import LabError


def setup(root: Path, **kwargs) -> DogsCatsDataModule:
    dm = DogsCatsDataModule(root=str(root), **kwargs)
    dm.setup()
    return dm


@pytest.mark.parametrize("layout", ["kaggle", "folders"])
def test_both_layouts_read_every_image_with_the_label_of_its_colour(tmp_path, layout):
    train = write_dogs_cats(tmp_path, per_class=10, layout=layout)
    (train / "README.txt").write_text("not an image: ignored")
    dm = setup(tmp_path, image_size=16)
    assert dm.num_classes == 2 and dm.class_names == ["cat", "dog"]
    images, labels = dm.images_and_labels()
    assert len(dm.files) == 20 and np.bincount(labels).tolist() == [10, 10]
    for path, label in zip(dm.files, labels, strict=True):
        assert ("dog" in path.relative_to(train).as_posix()) == bool(label)
    # Away from the white corner mark: cats are orange (red > blue), dogs blue.
    body = images[:, 8:, 8:].astype(float).mean(axis=(1, 2))
    assert np.array_equal(body[:, 2] > body[:, 0], labels == 1)
    # The mark stays top-left: no transposition or flip on the way.
    assert (images[:, 0, 0] > 200).all() and (images[:, -1, -1].min(axis=1) < 200).all()


def test_files_are_in_a_stable_natural_order(tmp_path):
    write_dogs_cats(tmp_path, per_class=12)
    names = [p.name for p in setup(tmp_path).files]
    assert names[:3] == ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"]
    assert names[10:13] == ["cat.10.jpg", "cat.11.jpg", "dog.0.jpg"]


def test_split_is_70_30_stratified_and_covers_every_image(tmp_path):
    write_dogs_cats(tmp_path, per_class=20)
    dm = setup(tmp_path)
    idx = dm.split_indices
    labels = dm.images_and_labels()[1]
    assert np.bincount(labels[idx["test"]]).tolist() == [6, 6]  # 30% of 20 per class
    assert len(idx["train"]) + len(idx["val"]) == 28
    assert len(idx["val"]) == 3  # val_fraction 0.1 of the 28, rounded up by scikit-learn
    everything = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert sorted(everything.tolist()) == list(range(40))
    assert np.array_equal(dm.train_set.indices, idx["train"])
    assert np.array_equal(dm.val_set.indices, idx["val"])
    assert np.array_equal(dm.test_set.indices, idx["test"])

    half = setup(tmp_path, test_fraction=0.5)
    assert np.bincount(labels[half.split_indices["test"]]).tolist() == [10, 10]


def test_imagenet_statistics_by_default(tmp_path):
    write_dogs_cats(tmp_path, per_class=10)
    dm = setup(tmp_path, image_size=16)
    x, _ = dm.test_set[0]
    raw = dm.images_and_labels()[0][dm.split_indices["test"][0]]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    expected = (torch.from_numpy(np.array(raw)).permute(2, 0, 1) / 255.0 - mean) / std
    assert torch.allclose(x, expected, atol=1e-5)


def test_cache_is_built_once_reused_and_equals_direct_decoding(tmp_path, monkeypatch):
    train = write_dogs_cats(tmp_path, per_class=10)
    first = setup(tmp_path, image_size=20)
    cache = source_cache_dir(tmp_path / "dogs-vs-cats") / "train_20x20_3ch.npy"
    assert first.cache_file == cache and cache.is_file()
    built = cache.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(lab.data.cache, "decode_image", no_decoding)
    second = setup(tmp_path, image_size=20)
    assert cache.stat().st_mtime_ns == built
    images = second.images_and_labels()[0]
    assert isinstance(images, np.memmap) and images.shape == (20, 20, 20, 3)
    for i, path in enumerate(second.files):
        assert np.array_equal(images[i], decode_image(path, (20, 20), 3))
    assert sorted(p.name for p in train.iterdir())[0] == "cat.0.jpg"  # sources untouched

    with pytest.raises(AssertionError, match="decoded again"):
        setup(tmp_path, image_size=24)  # another size is another cache file


def test_missing_folder_says_where_and_how_to_get_the_data(tmp_path):
    dm = DogsCatsDataModule(root=str(tmp_path))
    assert dm.num_classes == 2  # known before setup, for the CLI's link to the model
    with pytest.raises(LabError) as error:
        dm.setup()
    message = str(error.value)
    assert str(tmp_path / "dogs-vs-cats" / "train") in message
    assert "kaggle competitions download -c dogs-vs-cats" in message
    assert "cat.N.jpg" in message and "cat/" in message


@pytest.mark.parametrize("layout", ["kaggle", "folders"])
def test_one_class_only_is_an_error(tmp_path, layout):
    train = write_dogs_cats(tmp_path, per_class=4, layout=layout)
    for path in train.rglob("*.jpg"):
        if "dog" in path.relative_to(train).as_posix():
            path.unlink()
    with pytest.raises(LabError, match="only cat images"):
        setup(tmp_path)


def test_a_folder_without_cat_or_dog_images_is_an_error(tmp_path):
    train = tmp_path / "dogs-vs-cats" / "train"
    train.mkdir(parents=True)
    (train / "notes.txt").write_text("no images here")
    with pytest.raises(LabError, match="no cat or dog images"):
        setup(tmp_path)


def test_an_image_of_unknown_class_in_the_flat_layout_is_an_error(tmp_path):
    train = write_dogs_cats(tmp_path, per_class=3)
    (train / "cat.1.jpg").rename(train / "kitten.1.jpg")
    with pytest.raises(LabError, match="kitten.1.jpg"):
        setup(tmp_path)


def test_mixed_layouts_are_an_error(tmp_path):
    train = write_dogs_cats(tmp_path, per_class=3, layout="folders")
    (train / "cat" / "0.jpg").rename(train / "cat.0.jpg")
    with pytest.raises(LabError, match="mixes the two layouts"):
        setup(tmp_path)


def test_a_corrupt_jpeg_is_an_error_naming_it_and_leaves_no_cache(tmp_path):
    train = write_dogs_cats(tmp_path, per_class=4)
    (train / "dog.2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(LabError, match="dog.2.jpg"):
        setup(tmp_path)
    assert list(source_cache_dir(tmp_path / "dogs-vs-cats").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "dogs-vs-cats").iterdir()) == ["train"]


@pytest.mark.parametrize("kwargs", [{"test_fraction": 1.0}, {"image_size": None}], ids=str)
def test_bad_values_raise_a_clear_error(tmp_path, kwargs):
    with pytest.raises(LabError, match="must"):
        DogsCatsDataModule(root=str(tmp_path), **kwargs)
