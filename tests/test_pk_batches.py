"""The P x K training batches of ``ImageDataModule`` (pytorch-metric-learning's MPerClassSampler).

What MPerClassSampler guarantees (its source, pytorch-metric-learning 2.x): an epoch is
``length_before_new_iter`` (here the training set size) rounded down to a multiple of the
batch size; each batch takes ``batch_size // m`` classes drawn uniformly without
replacement and ``m`` images of each drawn without replacement, or WITH replacement when
the class has fewer than ``m`` images. Batches are independent draws, so an epoch is not a
permutation: some images come twice, some not at all, and small classes are drawn as often
as big ones.
"""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from lab.data.images import ImageDataModule
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


@pytest.mark.parametrize("p,k", [(4, 3), (2, 5), (8, 2)])
def test_every_batch_has_p_classes_with_k_images_each(p, k):
    np.random.seed(0)
    dm = make([12] * 8, pk_classes=p, pk_samples=k)
    assert dm.batch_size == p * k
    batches = epoch(dm) + epoch(dm)
    assert batches
    for indices, labels in batches:
        assert len(labels) == p * k
        counts = Counter(labels)
        assert len(counts) == p and set(counts.values()) == {k}
        assert len(set(indices)) == p * k  # every class has >= k images: no repeats
        assert [int(dm.labels[i]) for i in indices] == labels
        train = set(dm.train_set.indices.tolist())
        assert set(indices) <= train  # never a validation image


def test_an_epoch_is_the_training_set_size_but_not_a_permutation():
    np.random.seed(0)
    dm = make([12] * 8, pk_classes=4, pk_samples=3)
    n = len(dm.train_set)  # 76 of the 96 images after the 20% validation hold-out
    batches = epoch(dm)
    seen = [i for indices, _ in batches for i in indices]
    assert len(batches) == n // 12 and len(seen) == n - n % 12
    # Independent draws per batch: well short of every image exactly once.
    assert 0.5 < len(set(seen)) / n < 0.95
    # ... though every image turns up within a few epochs.
    for _ in range(10):
        seen += [i for indices, _ in epoch(dm) for i in indices]
    assert set(seen) == set(dm.train_set.indices.tolist())


def test_uneven_classes_are_drawn_equally_and_small_ones_repeat_images():
    np.random.seed(0)
    counts = [40, 30, 20, 12, 8, 6, 4, 4]  # train: about 80% of each
    dm = make(counts, pk_classes=4, pk_samples=4)
    small = {c for c in range(8) if (dm.train_set.targets == c).sum() < 4}
    assert small  # classes with fewer than K training images exist
    drawn, repeats = Counter(), 0
    for _ in range(30):
        for indices, labels in epoch(dm):
            counts_in_batch = Counter(labels)
            assert len(counts_in_batch) == 4 and set(counts_in_batch.values()) == {4}
            drawn.update(set(labels))
            repeats += len(indices) - len(set(indices))
            if small & set(labels):
                assert len(set(indices)) < len(indices)
    # Exactly K labels per class always, but K distinct images only when the class has K.
    assert repeats > 0
    # Classes are drawn uniformly, whatever their size (the big ones are undersampled).
    assert max(drawn.values()) / min(drawn.values()) < 1.4


def test_batch_size_is_p_times_k_whatever_was_set():
    dm = make([12] * 8, pk_classes=3, pk_samples=2, batch_size=100)
    assert dm.batch_size == 6 and dm.train_dataloader().batch_size == 6


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
    with pytest.raises(LabError, match="pk_classes <= 3"):
        dm.train_dataloader()
