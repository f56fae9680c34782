"""Tiny ImageNet's own checks (the shared ones are in test_contract.py): labels from the
sorted wnids and the val annotations, greyscale JPEGs, class subsets, names from
words.txt, the cache, damaged files and the download."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lab.data.cache
import lab.data.tiny_imagenet as tiny
from lab.data.cache import decode_image, source_cache_dir
from lab.data.fakes.tiny_imagenet import class_colour, grey_of, write_tiny_imagenet
from lab.data.tiny_imagenet import TinyImageNetDataModule
from lab.errors import LabError


def write(root: Path, **kwargs) -> Path:
    return write_tiny_imagenet(root, **{"train_per_class": 10, **kwargs})


def make(root: Path, **kwargs) -> TinyImageNetDataModule:
    dm = TinyImageNetDataModule(root=str(root), normalization="none", **kwargs)
    dm.setup()
    return dm


def assert_labels_match_colours(dataset, num_classes: int) -> None:
    """Each item's mean colour is its class colour (or that colour's grey), within JPEG error."""
    candidates = [np.array(class_colour(k), float) for k in range(num_classes)]
    greys = [np.full(3, grey_of(class_colour(k))) for k in range(num_classes)]
    for i in range(len(dataset)):
        image, label = dataset[i]
        colour = image.float().mean(dim=(1, 2)).numpy() * 255
        distance = [
            min(abs(colour - c).max(), abs(colour - g).max())
            for c, g in zip(candidates, greys, strict=True)
        ]
        assert int(np.argmin(distance)) == label and min(distance) < 12


def annotations(base: Path) -> dict[str, str]:
    lines = (base / "val" / "val_annotations.txt").read_text().splitlines()
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines}


def test_labels_match_content_in_train_heldout_val_and_test(tmp_path):
    write(tmp_path, num_classes=4, val_per_class=3)
    dm = make(tmp_path)
    assert dm.num_classes == 4
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        assert_labels_match_colours(dataset, 4)
    # val: 10% of the 40 training images, one per class; test: the official val.
    assert np.bincount(dm.val_set.targets).tolist() == [1, 1, 1, 1]
    assert np.bincount(dm.test_set.targets).tolist() == [3, 3, 3, 3]
    split = np.concatenate([dm.train_set.indices, dm.val_set.indices])
    assert sorted(split.tolist()) == list(range(40))


def test_labels_are_indices_of_the_sorted_wnids(tmp_path):
    base = write(tmp_path, num_classes=5)
    listed = (base / "wnids.txt").read_text().split()
    assert listed != sorted(listed)  # else this test could not tell the orders apart
    dm = make(tmp_path)
    assert dm.wnids() == sorted(listed)
    for path, label in zip(dm.files["train"], dm.load_split("train")[1], strict=True):
        assert path.parts[-3] == sorted(listed)[label]
    wnid_of = annotations(base)
    for path, label in zip(dm.files["test"], dm.test_set.targets, strict=True):
        assert wnid_of[path.name] == sorted(listed)[label]


def test_greyscale_jpegs_come_out_with_the_configured_channels(tmp_path):
    write(tmp_path, num_classes=3, greyscale=2)
    dm = make(tmp_path)
    modes = [Image.open(p).mode for p in dm.files["train"]]
    assert modes.count("L") == 2
    grey = modes.index("L")
    images, labels = dm.load_split("train")
    assert images.shape[1:] == (64, 64, 3)
    assert (images[grey] == images[grey][..., :1]).all()  # R = G = B
    expected = grey_of(class_colour(int(labels[grey])))
    assert abs(images[grey].mean() - expected) < 6

    one = TinyImageNetDataModule(root=str(tmp_path), channels=1, normalization="none")
    one.setup()
    x, _ = one.val_set[0]
    assert x.shape == (1, 64, 64)
    position = int(np.flatnonzero(one.train_set.indices == grey)[0])
    x, _ = one.train_set[position]
    assert abs(float(x.mean()) * 255 - expected) < 6

    big = make(tmp_path, image_size=224)
    assert big.train_set[0][0].shape == (3, 224, 224)
    cached = sorted(p.name for p in source_cache_dir(tmp_path / "tiny-imagenet-200").glob("*.npy"))
    assert cached == ["test_all_64px_rgb.npy", "train_all_64px_rgb.npy"]  # no 224 cache


def test_class_subset_keeps_the_first_classes_everywhere(tmp_path):
    base = write(tmp_path, num_classes=6)
    dm = TinyImageNetDataModule(root=str(tmp_path), num_classes_subset=3, normalization="none")
    assert dm.num_classes == 3  # before setup: the CLI links it to the model
    dm.setup()
    sorted_wnids = sorted((base / "wnids.txt").read_text().split())
    assert dm.wnids() == sorted_wnids[:3]
    assert len(dm.train_set) + len(dm.val_set) == 30 and len(dm.test_set) == 6
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        assert set(dataset.targets.tolist()) == {0, 1, 2}
        assert_labels_match_colours(dataset, 3)
    assert dm.cache_file("train").name == "train_first3_64px_rgb.npy"
    assert dm.cache_file("train").is_file()
    with pytest.raises(LabError, match="num_classes_subset=7"):
        make(tmp_path, num_classes_subset=7)


def test_class_names_come_from_words_txt_lazily(tmp_path):
    absent = TinyImageNetDataModule(root=str(tmp_path))
    assert absent.num_classes == 200 and absent.class_names == [str(i) for i in range(200)]
    base = write(tmp_path, num_classes=4)
    words = dict(line.split("\t") for line in (base / "words.txt").read_text().splitlines())
    assert len(words) > 4 and all(", " in names for names in words.values())
    dm = TinyImageNetDataModule(root=str(tmp_path))
    expected = [words[w].split(", ")[0] for w in sorted((base / "wnids.txt").read_text().split())]
    assert dm.class_names == expected  # before setup, from the folder already there
    dm.setup()
    assert dm.class_names == expected


def test_second_setup_reads_the_cache_which_equals_direct_decoding(tmp_path, monkeypatch):
    write(tmp_path, num_classes=3)
    dm = make(tmp_path)
    assert dm.cache_file("train").is_file() and dm.cache_file("test").is_file()
    images, _ = dm.load_split("train")
    for row, path in zip(images, dm.files["train"], strict=True):
        assert np.array_equal(row, decode_image(path, (64, 64), 3))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(lab.data.cache, "decode_image", no_decoding)
    again = make(tmp_path)
    for a, b in [(dm.train_set, again.train_set), (dm.test_set, again.test_set)]:
        assert len(a) == len(b)
        assert all((a[i][0] == b[i][0]).all() and a[i][1] == b[i][1] for i in range(len(a)))


@pytest.mark.parametrize("line", ["val_0.JPEG\tn00000001\t0\t0\t9\t9", "val_0.JPEG\tbroken"])
def test_bad_val_annotation_line_names_the_file_and_line(tmp_path, line):
    base = write(tmp_path, num_classes=2)
    notes = base / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + line + "\n")
    with pytest.raises(LabError, match=r"val_annotations\.txt, line 5"):
        make(tmp_path)


def test_corrupt_jpeg_and_missing_folder_are_lab_errors_naming_the_path(tmp_path):
    base = write(tmp_path, num_classes=2)
    bad = sorted((base / "train").glob("*/images/*.JPEG"))[3]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(LabError, match=str(bad)):
        make(tmp_path)
    with pytest.raises(
        LabError, match=f"{tmp_path / 'elsewhere' / 'tiny-imagenet-200'}.*download=true"
    ):
        make(tmp_path / "elsewhere")


def test_download_renames_a_complete_extraction_into_place(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename=None, md5=None):
        calls.append((url, md5))
        write(Path(download_root), num_classes=2)
        if len(calls) == 1:
            raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(tiny, "download_and_extract_archive", fake_download)
    stale = TinyImageNetDataModule(root=str(tmp_path))  # 200 classes: no data yet
    dm = TinyImageNetDataModule(root=str(tmp_path), download=True, num_classes_subset=2)
    with pytest.raises(LabError, match="corrupted"):
        dm.prepare_data()
    assert list(tmp_path.iterdir()) == []  # the half extraction is gone, not taken as data
    dm.prepare_data()
    assert calls == [(tiny.URL, tiny.MD5)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-imagenet-200"]
    dm.setup()
    assert len(dm.test_set) == 4
    with pytest.raises(LabError, match="lists 2 classes but the model was built for 200"):
        stale.setup()
