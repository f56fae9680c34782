"""STL-10's own checks (the shared ones are in test_contract.py and test_published.py):
the column-major files against torchvision's own reader, memory-mapping, default split
sizes, damaged files and the unlabelled loader."""

import numpy as np
import pytest
import torch
from torchvision.datasets import STL10

from lab.data.fakes import colour_label
from lab.data.fakes.stl10 import mark_place, write_stl10
from lab.data.stl10 import CLASSES, STL10DataModule
from lab.errors import LabError
from tests.data import set_up


@pytest.fixture
def root(tmp_path):
    write_stl10(tmp_path, per_class_train=10, per_class_test=2, unlabeled=30)
    return tmp_path


def make(root, **kwargs) -> STL10DataModule:
    return set_up(STL10DataModule, root, **kwargs)


def pixels(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("split", ["train", "test"])
def test_images_match_torchvision_and_are_upright(root, monkeypatch, split):
    # Our writer and reader could agree on a wrong layout; torchvision's reader is the
    # reference for the published files.
    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)
    reference = STL10(str(root), split=split, download=False)
    images, labels = make(root).load_split(split)
    assert np.array_equal(images.transpose(0, 3, 1, 2), reference.data)
    assert labels.tolist() == reference.labels.tolist() and reference.classes == CLASSES
    assert [colour_label(image) for image in images] == labels.tolist()
    assert {mark_place(image) for image in images} == {"top-left"}


def test_images_stay_memory_mapped_read_only(root):
    dm = make(root)
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        assert isinstance(dataset.images, np.memmap) and not dataset.images.flags.writeable
        assert dataset.images.shape[1:] == (96, 96, 3)


def test_default_holds_out_a_tenth_stratified(root):
    dm = make(root)
    assert dm.val_fraction == 0.1 and dm.num_classes == 10 and dm.class_names == CLASSES
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 20)
    assert np.bincount(dm.val_set.targets, minlength=10).tolist() == [1] * 10


def test_unlabeled_loader_is_shuffled_with_the_train_transform(root):
    torch.manual_seed(0)
    dm = make(root, batch_size=8, hflip=1.0, image_size=48)
    batches = list(dm.unlabeled_dataloader())
    images = torch.cat([x for x, _ in batches])
    assert images.shape == (30, 3, 48, 48)
    assert torch.cat([y for _, y in batches]).eq(-1).all()
    colours = [colour_label(pixels(x)) for x in images]
    assert sorted(colours) == sorted(i % 10 for i in range(30))
    assert colours != [i % 10 for i in range(30)]  # stored order: shuffled
    # hflip=1.0 moves the mark right in the train transform only
    assert {mark_place(pixels(x)) for x in images} == {"top-right"}
    assert mark_place(pixels(dm.test_set[0][0])) == "top-left"


def test_truncated_images_are_a_lab_error(root):
    path = root / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LabError, match=r"test_X.bin is \d+ bytes, not a whole number"):
        make(root)


def test_labels_that_do_not_fit_the_images_are_a_lab_error(root):
    (root / "stl10_binary" / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(LabError, match=r"train_X.bin holds 100 images but .*train_y.bin 3"):
        make(root)


def test_a_missing_unlabeled_file_names_it(root):
    (root / "stl10_binary" / "unlabeled_X.bin").unlink()
    dm = make(root)  # the labelled splits do not need it
    with pytest.raises(LabError, match=r"unlabeled_X.bin not found.*download=true"):
        dm.unlabeled_dataloader()
