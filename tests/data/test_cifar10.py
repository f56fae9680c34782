"""CIFAR-10's own checks (the shared ones are in test_contract.py and test_published.py):
the fixture against torchvision's own reader, default split sizes, the subset and class
options, damaged files and the options YAML can set."""

import numpy as np
import pytest
from jsonargparse import ArgumentParser
from torchvision.datasets import CIFAR10

from lab.data.cifar10 import CLASSES, CIFAR10DataModule
from lab.data.fakes import colour_label
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.stl10 import mark_place
from lab.errors import LabError
from tests.data import set_up


@pytest.fixture
def root(tmp_path):
    write_cifar10(tmp_path, per_class_train=10, per_class_test=2)
    return tmp_path


def make(root, **kwargs) -> CIFAR10DataModule:
    return set_up(CIFAR10DataModule, root, **kwargs)


@pytest.mark.parametrize("train", [True, False])
def test_fixture_reads_the_same_through_torchvision(root, monkeypatch, train):
    # torchvision unpickles with encoding="latin1" and str keys, as the Python 2 originals
    # need; a fixture it cannot read would not be in the real format.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: True)
    reference = CIFAR10(str(root), train=train, download=False)
    images, labels = make(root).load_split("train" if train else "test")
    assert np.array_equal(images, reference.data)
    assert labels.tolist() == reference.targets
    assert reference.classes == CLASSES
    assert [colour_label(image) for image in images] == labels.tolist()
    assert {mark_place(image) for image in images} == {"top-left"}


def test_default_holds_out_a_fifth_stratified(root):
    dm = make(root)  # 0.2 of the real 50,000 is the usual 10,000
    assert dm.val_fraction == 0.2 and dm.num_classes == 10 and dm.class_names == CLASSES
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (80, 20, 20)
    assert np.bincount(dm.val_set.targets, minlength=10).tolist() == [2] * 10


def test_train_subset_is_seeded_and_checked(root):
    a, b, c = (make(root, train_subset=50, seed=s) for s in (0, 0, 1))
    pool = np.concatenate([a.train_set.indices, a.val_set.indices])
    assert len(pool) == 50 and np.bincount(a.train_set.labels[pool]).tolist() == [5] * 10
    assert np.array_equal(a.train_set.indices, b.train_set.indices)
    assert not np.array_equal(a.train_set.indices, c.train_set.indices)
    with pytest.raises(LabError, match="train_subset=100 but the training set has 100"):
        make(root, train_subset=100)


def test_damaged_batch_is_a_lab_error_naming_it(root):
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(LabError, match=r"data_batch_3 is not a CIFAR-10 python pickle.*download"):
        make(root)


def test_meta_with_other_class_names_is_rejected(root):
    import pickle

    meta = root / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    with pytest.raises(LabError, match=r"batches.meta names classes \['a', 'b'\]"):
        make(root)


def test_yaml_can_set_the_image_options_by_their_base_names():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CIFAR10DataModule, "data")
    config = parser.parse_args(
        ["--data.image_size=40", "--data.channels=1", "--data.hflip=0.5", "--data.train_subset=50"]
    )
    assert config.data.image_size == 40 and config.data.channels == 1
    assert config.data.hflip == 0.5 and config.data.train_subset == 50
    assert config.data.val_fraction == 0.2 and config.data.verify is True
    assert config.data.download is False and config.data.crop_padding == 0


def _original_classes(dataset) -> list[int]:
    """The CIFAR-10 class of each item, read from the fixture's colours."""
    return [colour_label(dataset.images[i]) for i in dataset.indices]


def test_cifar_classes_keep_and_relabel_in_the_order_given(root):
    dm = CIFAR10DataModule(
        root=str(root), verify=False, normalization="none", classes=["dog", "cat"]
    )
    assert dm.num_classes == 2 and dm.class_names == ["dog", "cat"]
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 4, 4)
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        originals = _original_classes(dataset)
        assert set(originals) == {3, 5}  # cat, dog
        assert dataset.targets.tolist() == [0 if c == 5 else 1 for c in originals]
    assert np.bincount(dm.val_set.targets).tolist() == [2, 2]


def test_cifar_classes_combine_with_train_subset(root):
    dm = CIFAR10DataModule(
        root=str(root),
        verify=False,
        classes=["airplane", "automobile", "truck"],
        train_subset=21,
        val_fraction=1 / 3,
    )
    dm.setup()
    pool = np.concatenate([dm.train_set.targets, dm.val_set.targets])
    assert len(pool) == 21 and np.bincount(pool).tolist() == [7, 7, 7]
    assert set(_original_classes(dm.train_set)) == {0, 1, 9}
    with pytest.raises(LabError, match="train_subset=30 but the training set has 30"):
        CIFAR10DataModule(
            root=str(root), verify=False, classes=["cat", "dog", "frog"], train_subset=30
        ).setup()


@pytest.mark.parametrize("classes", [["cat"], ["cat", "cat"], ["cat", "wolf"], []])
def test_cifar_classes_are_checked(classes):
    with pytest.raises(LabError, match="data.classes"):
        CIFAR10DataModule(classes=classes)
