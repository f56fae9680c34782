"""data.labelled_per_class: few labels, many unlabelled images (STL-10's shape on any data
set): counts per class, seeded, disjoint from val and test, and the unlabelled loader."""

import numpy as np
import pytest

from lab.data import FashionMNISTDataModule
from lab.data.device_loader import DeviceBatchLoader
from lab.data.fakes.idx import write_idx
from lab.errors import LabError
from tests.data import set_up


@pytest.fixture
def idx_root(tmp_path):
    write_idx(tmp_path, per_class_train=10, per_class_test=2)
    return tmp_path


def test_labelled_subset_counts_seeded_and_disjoint(idx_root):
    dm = set_up(FashionMNISTDataModule, idx_root, labelled_per_class=3, seed=4)
    assert np.bincount(dm.train_set.targets, minlength=10).tolist() == [3] * 10
    assert dm.reference_set.indices.tolist() == dm.train_set.indices.tolist()
    # Every training image not held out for val is unlabelled, the labelled ones included.
    full = set_up(FashionMNISTDataModule, idx_root, seed=4)
    assert dm.unlabeled_set.indices.tolist() == full.train_set.indices.tolist()
    assert set(dm.train_set.indices) < set(dm.unlabeled_set.indices)
    assert (dm.unlabeled_set.targets == -1).all()
    assert not set(dm.unlabeled_set.indices) & set(dm.val_set.indices)
    assert len(dm.test_set) == 20  # the test file, never split from the training one
    again = set_up(FashionMNISTDataModule, idx_root, labelled_per_class=3, seed=4)
    other = set_up(FashionMNISTDataModule, idx_root, labelled_per_class=3, seed=5)
    assert again.train_set.indices.tolist() == dm.train_set.indices.tolist()
    assert other.train_set.indices.tolist() != dm.train_set.indices.tolist()


def test_without_the_option_every_training_image_is_labelled(idx_root):
    dm = set_up(FashionMNISTDataModule, idx_root)
    assert dm.unlabeled_set.indices.tolist() == dm.train_set.indices.tolist()
    assert len(dm.train_set) == 90


@pytest.mark.parametrize("device_data", [False, True])
def test_unlabeled_loader_yields_every_unlabelled_image(idx_root, device_data):
    dm = set_up(
        FashionMNISTDataModule,
        idx_root,
        labelled_per_class=2,
        device_data=device_data,
        batch_size=32,
        pk_classes=None,
    )
    loader = dm.unlabeled_dataloader()
    assert isinstance(loader, DeviceBatchLoader) == device_data
    seen = sum(len(images) for images, _ in loader)
    labels = np.concatenate([labels.numpy() for _, labels in loader])
    assert seen == len(dm.unlabeled_set) == 90 and len(dm.train_set) == 20
    if not device_data:
        assert (labels == -1).all()


def test_more_labels_than_a_class_has_is_one_line(idx_root):
    with pytest.raises(LabError, match=r"labelled_per_class=10: .* only 9 images"):
        set_up(FashionMNISTDataModule, idx_root, labelled_per_class=10)
    with pytest.raises(LabError, match="at least 1"):
        FashionMNISTDataModule(labelled_per_class=0)
