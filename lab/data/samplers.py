"""P x K batches: P classes with K images each, so every anchor has positives and negatives.

Batch-hard triplet mining (Hermans et al. 2017) needs them. pytorch-metric-learning's
``MPerClassSampler`` draws classes and images with replacement, so an epoch of it sees only
about 63% of the distinct training images; this sampler walks every image once per epoch:

1. each class's images are shuffled and cut into groups of K (a last, short group is
   topped up with other images of the same class, so no image is left out);
2. an epoch is ceil(groups / P) batches; each takes one group from each of P distinct
   classes: first every class with as many groups left as batches left (or it could not
   finish), then others drawn with probability proportional to their remaining groups;
3. a batch that finds fewer than P classes with groups left is completed with fresh groups
   of other classes.

So every image is seen at least once per epoch, unless one class holds more than 1/P of
the images (it cannot appear in every batch twice); its surplus groups are left out.

Under distributed training each process takes every ``world_size``-th batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from lab.errors import LabError


class PKBatchSampler(Sampler[list[int]]):
    """Yields index lists of ``p`` classes x ``k`` images; reshuffled every epoch (seeded).

    Args:
        labels: the class of every item of the dataset.
        p: classes per batch (at most the number of classes present).
        k: images per class per batch (at least 2, at most the smallest class's size).
        seed: base seed; epoch ``e`` uses ``seed + e`` (``set_epoch`` is called by Lightning).
        rank, world_size: this process's share under distributed training.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        classes, counts = np.unique(labels, return_counts=True)
        if p < 2 or k < 2:
            raise LabError(
                f"P x K batches need at least 2 classes and 2 images per class (every anchor "
                f"needs a positive and a negative), got pk_classes={p}, pk_samples={k}"
            )
        if p > len(classes):
            raise LabError(
                f"pk_classes={p} but the training set has only {len(classes)} classes: "
                f"lower data.pk_classes"
            )
        if k > counts.min():
            smallest = classes[counts.argmin()]
            raise LabError(
                f"pk_samples={k} but class {smallest} has only {counts.min()} training "
                f"images: lower data.pk_samples to at most {counts.min()}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.members = [np.flatnonzero(labels == c) for c in classes]
        groups = sum(-(-len(m) // k) for m in self.members)
        # Rounded up to a multiple of world_size so that every process gets equal batches.
        batches = math.ceil(groups / p)
        self.batches_total = math.ceil(batches / world_size) * world_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently for each epoch (called by Lightning's fit loop)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_total // self.world_size

    def _groups(self, rng: np.random.Generator, members: np.ndarray) -> list[np.ndarray]:
        order = rng.permutation(members)
        short = -len(order) % self.k
        if short:  # top the last group up with other images of the class
            rest = np.setdiff1d(members, order[len(order) - (self.k - short) :])
            order = np.concatenate([order, rng.choice(rest, short, replace=False)])
        return list(order.reshape(-1, self.k))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        queues = [self._groups(rng, m) for m in self.members]
        all_classes = np.arange(len(queues))
        for batch_index in range(self.batches_total):
            left = np.array([len(q) for q in queues], dtype=float)
            # A class with a group left for every remaining batch must be in this one.
            tight = np.flatnonzero(left >= self.batches_total - batch_index)
            chosen = rng.permutation(tight)[: self.p]
            free = np.setdiff1d(np.flatnonzero(left), chosen)
            take = min(self.p - len(chosen), len(free))
            if take:
                weights = left[free] / left[free].sum()
                chosen = np.concatenate([chosen, rng.choice(free, take, False, p=weights)])
            batch = [queues[c].pop() for c in chosen]
            if len(chosen) < self.p:  # the end of the epoch: fresh groups of other classes
                others = rng.choice(np.setdiff1d(all_classes, chosen), self.p - len(chosen), False)
                batch += [rng.choice(self.members[c], self.k, replace=False) for c in others]
            if batch_index % self.world_size == self.rank:
                yield np.concatenate(batch).tolist()
