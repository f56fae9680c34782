"""The P x K training batches (``lab.data.samplers.PKBatchSampler``) of the data modules.

Checked: every batch holds P distinct classes with K distinct images each, an epoch walks
every training image (a permutation topped up at the ends, unlike pytorch-metric-learning's
MPerClassSampler, which draws with replacement), epochs differ and are seeded, processes of
a distributed run get disjoint batches, and impossible P x K requests fail clearly.
"""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from lab.data.images import ImageDataModule
from lab.data.samplers import PKBatchSampler
from lab.errors import LabError


class Synthetic(ImageDataModule):
    """Images whose every pixel is the image's own index, so a batch tells which images it holds."""

    def __init__(self, counts: list[int], **kwargs) -> None:
        super().__init__(normalization="none", **kwargs)
        self.labels = np.repeat(np.arange(len(counts)), counts)
        self.num_classes = len(counts)
        self.class_names = [str(c) for c in range(len(counts))]

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.labels)
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3))
        return np.ascontiguousarray(images), self.labels


def make(counts: list[int], **kwargs) -> Synthetic:
    dm = Synthetic(counts, val_fraction=0.2, **kwargs)
    dm.setup("fit")
    return dm


def epoch(dm: ImageDataModule) -> list[tuple[list[int], list[int]]]:
    """(image indices, labels) of each training batch of one epoch."""
    batches = []
    for x, y in dm.train_dataloader():
        indices = torch.round(x[:, 0, 0, 0] * 255).long()
        batches.append((indices.tolist(), y.tolist()))
    return batches


def check_pk(batches, labels_of, p: int, k: int) -> None:
    for indices, labels in batches:
        assert len(labels) == p * k
        counts = Counter(labels)
        assert len(counts) == p and set(counts.values()) == {k}
        assert len(set(indices)) == p * k  # no image twice in a batch
        assert [int(labels_of[i]) for i in indices] == labels


@pytest.mark.parametrize("p,k", [(4, 3), (2, 5), (8, 2)])
def test_every_batch_has_p_classes_with_k_images_each(p, k):
    dm = make([12] * 8, pk_classes=p, pk_samples=k)
    assert dm.batch_size == p * k
    batches = epoch(dm) + epoch(dm)
    assert batches
    check_pk(batches, dm.labels, p, k)
    train = set(dm.train_set.indices.tolist())
    assert all(set(indices) <= train for indices, _ in batches)  # never a validation image


@pytest.mark.parametrize("counts", [[12] * 8, [40, 30, 20, 12, 8, 6, 5, 4]], ids=["even", "uneven"])
def test_an_epoch_walks_every_training_image(counts):
    dm = make(counts, pk_classes=3, pk_samples=3)
    loader = dm.train_dataloader()
    train = set(dm.train_set.indices.tolist())
    groups = sum(-(-c // 3) for c in np.bincount(dm.train_set.targets))
    assert len(loader) == -(-groups // 3)
    for seed_epoch in range(3):
        loader.batch_sampler.set_epoch(seed_epoch)
        batches = [(x, y) for x, y in ((b[0], b[1]) for b in epoch_of(loader))]
        check_pk(batches, dm.labels, 3, 3)
        assert len(batches) == len(loader)
        seen = [i for indices, _ in batches for i in indices]
        # Each image at least once; the few extra are the top-ups of short groups and
        # classes that ran out before the end of the epoch.
        assert set(seen) == train
        assert len(seen) - len(train) < 3 * 3 * 8


def epoch_of(loader):
    for x, y in loader:
        yield torch.round(x[:, 0, 0, 0] * 255).long().tolist(), y.tolist()


def test_epochs_differ_and_are_seeded():
    labels = np.repeat(np.arange(6), 10)
    first = PKBatchSampler(labels, p=3, k=2, seed=1)
    again = PKBatchSampler(labels, p=3, k=2, seed=1)
    assert list(first) == list(again)
    one = list(first)
    first.set_epoch(1)
    assert list(first) != one
    assert list(PKBatchSampler(labels, p=3, k=2, seed=2)) != one


def test_distributed_processes_get_disjoint_batches_of_one_epoch():
    labels = np.repeat(np.arange(7), [10, 9, 9, 8, 8, 7, 5])  # 56 images, 30 groups of 2
    shards = [
        list(PKBatchSampler(labels, p=3, k=2, seed=0, rank=r, world_size=3)) for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(30 / 3) = 10 batches, rounded up to 12
    batches = [b for shard in shards for b in shard]
    assert len({tuple(b) for b in batches}) == 12
    assert {i for b in batches for i in b} == set(range(56))  # the epoch is still whole


def test_batch_size_is_p_times_k_whatever_was_set():
    dm = make([12] * 8, pk_classes=3, pk_samples=2, batch_size=100)
    assert dm.batch_size == 6 and len(next(iter(dm.train_dataloader()))[1]) == 6


def test_evaluation_loaders_ignore_pk():
    dm = make([12] * 8, pk_classes=4, pk_samples=3, eval_batch_size=5)
    loader = dm.val_dataloader()
    assert isinstance(loader.sampler, SequentialSampler) and loader.batch_size == 5
    assert sum(len(y) for _, y in loader) == len(dm.val_set)


def test_without_pk_the_loader_is_the_plain_shuffled_one():
    torch.manual_seed(0)
    dm = make([12, 9, 5], batch_size=8)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RandomSampler) and not loader.drop_last
    indices = [i for batch, _ in epoch(dm) for i in batch]
    train = sorted(dm.train_set.indices.tolist())
    assert sorted(indices) == train and indices != train  # a permutation, shuffled


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pk_classes": 4},
        {"pk_samples": 4},
        {"pk_classes": 1, "pk_samples": 4},
        {"pk_classes": 4, "pk_samples": 1},
        {"pk_classes": 0, "pk_samples": 0},
    ],
    ids=str,
)
def test_pk_options_are_validated(kwargs):
    with pytest.raises(LabError, match="pk_classes|P x K"):
        Synthetic([12] * 8, **kwargs)


def test_more_pk_classes_than_training_classes_is_a_clear_error():
    dm = make([12] * 3, pk_classes=4, pk_samples=2)
    with pytest.raises(LabError, match="pk_classes=4 but the training set has only 3 classes"):
        dm.train_dataloader()


def test_more_pk_samples_than_a_class_has_is_a_clear_error():
    dm = make([12, 12, 3], pk_classes=2, pk_samples=4)  # class 2 keeps 2 or 3 for training
    with pytest.raises(LabError, match="pk_samples=4 but class 2 has only"):
        dm.train_dataloader()
