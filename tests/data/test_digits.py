"""The digits' own checks (the shared ones are in test_contract.py): split shares,
sizes by upsampling, standardisation and the labels of scikit-learn."""

import numpy as np
import pytest
import torch

from lab.data import DigitsDataModule
from lab.errors import LabError


def setup(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(**kwargs)
    dm.setup()
    return dm


def test_splits_cover_all_digits_once_and_are_stratified():
    dm = setup(val_fraction=0.15, test_fraction=0.2)
    idx = dm.split_indices
    all_idx = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(all_idx) == 1797 and len(set(all_idx.tolist())) == 1797
    assert len(idx["test"]) == pytest.approx(0.2 * 1797, abs=1)
    assert len(idx["val"]) == pytest.approx(0.15 * 1797, abs=2)
    for split in (dm.train_set, dm.val_set, dm.test_set):
        counts = torch.bincount(split.tensors[1], minlength=10).float()
        share = counts / counts.sum()
        assert share.min() > 0.08 and share.max() < 0.12  # every class near 10%


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 8), (3, 32), (1, 64)])
def test_images_have_requested_shape(channels, size):
    dm = setup(channels=channels, image_size=size, batch_size=16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, channels, size, size) and len(y) == 16


def test_standardised_with_train_statistics():
    dm = setup()
    train = dm.train_set.tensors[0]
    assert train.mean().abs() < 1e-5 and (train.std() - 1).abs() < 1e-4


def test_labels_match_sklearn():
    from sklearn.datasets import load_digits

    dm = setup()
    target = load_digits().target
    assert np.array_equal(dm.test_set.tensors[1].numpy(), target[dm.split_indices["test"]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 2},
        {"image_size": 4},
        {"val_fraction": 0.6, "test_fraction": 0.5},
        {"batch_size": 0},
    ],
    ids=str,
)
def test_bad_values_raise_a_clear_error(kwargs):
    with pytest.raises(LabError, match="must"):
        DigitsDataModule(**kwargs)
