"""A data path that keeps whole splits on the device and augments whole batches there.

The approach of cifar10-airbench (Keller Jordan's ``CifarLoader``): the images of a split
live in one uint8 ``(N, C, H, W)`` tensor on the training device (decoded, channel-converted
and resized once); a batch is an ``index_select`` of it, and the training augmentation
(reflect pad + random crop, horizontal flip) is two ``gather`` calls with per-image indices,
followed by the same float scaling and normalisation as ``lab.data.transforms``. No
DataLoader workers, no per-image Python, no host-to-device copy per batch.

The order of the items follows ``torch.utils.data.DistributedSampler`` exactly (seed +
epoch, padding, interleaved shards), so one process sees the same order as a
``DistributedSampler(num_replicas=1)`` would give, and processes of a distributed run get
disjoint, equal-sized shares. Lightning calls ``loader.sampler.set_epoch`` every epoch,
as it does for a DataLoader's sampler.

With ``pk=(P, K)`` the training batches are P x K batches instead: the index lists of
``lab.data.samplers.PKBatchSampler`` (drawn on the host, one small int64 tensor per epoch
sent to the device), so the classes and counts of every batch are exactly those of the
DataLoader path with the same seed, and its shards under distributed training too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from lab.data.samplers import PKBatchSampler
from lab.errors import LabError

Stats = tuple[Sequence[float], Sequence[float]]


class EpochOrder:
    """The items one process reads in an epoch, as a tensor: ``DistributedSampler``'s order.

    Shuffled: a permutation from a ``torch.Generator`` seeded with ``seed + epoch``; else
    ``0..size-1``. With ``world_size`` processes the order is topped up from its start to a
    multiple of ``world_size`` and process ``rank`` takes every ``world_size``-th item.
    """

    def __init__(
        self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.num_samples = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch: the next order's seed."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> torch.Tensor:
        """int64 indices (on the CPU) of this epoch's items for this process."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        total = self.num_samples * self.world_size
        if total > self.size and self.size:  # top up from the start, as DistributedSampler
            order = order.repeat(math.ceil(total / self.size))[:total]
        return order[self.rank : total : self.world_size]


def reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in ``(-size, 2 size - 1)`` into ``[0, size)`` by reflection about the
    edges without repeating them (``torch.nn.functional.pad``'s ``reflect`` mode)."""
    positions = positions.abs()
    return torch.where(positions > size - 1, 2 * (size - 1) - positions, positions)


def crop_flip(
    images: torch.Tensor,
    padding: int,
    offsets: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reflect-pad a batch by ``padding``, crop each image back to its size at its own
    place, then mirror the images where ``flip`` is set; all in two ``gather`` calls.

    Args:
        images: ``(N, C, H, W)`` batch of any dtype.
        padding: reflect padding on every side (less than H and W).
        offsets: int ``(N, 2)`` top-left corner ``(row, column)`` of each crop in the padded
            image, each in ``[0, 2 padding]``; None (or padding 0): no crop.
        flip: bool ``(N,)``: mirror these images left to right after the crop.
    """
    n, c, h, w = images.shape
    if padding >= min(h, w):
        raise LabError(
            f"crop_padding={padding} needs images larger than it (reflect padding), "
            f"got {h}x{w}: lower data.crop_padding"
        )
    device = images.device
    rows = torch.arange(h, device=device).expand(n, h)
    cols = torch.arange(w, device=device).expand(n, w)
    if padding and offsets is not None:
        offsets = offsets.to(device)
        # Padded position (offset + i) is source position (offset + i - padding), reflected.
        rows = reflect(rows + (offsets[:, :1] - padding), h)
        cols = reflect(cols + (offsets[:, 1:] - padding), w)
    if flip is not None:
        cols = torch.where(flip.to(device)[:, None], cols.flip(1), cols)
    out = images
    if padding and offsets is not None:
        out = out.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    if (padding and offsets is not None) or flip is not None:
        out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return out


def to_float(images: torch.Tensor, stats: Stats | None) -> torch.Tensor:
    """uint8 batch -> float32 in [0, 1], normalised with ``stats``: the end of
    ``image_transform`` (torchvision's ``to_dtype`` and ``normalize``, which take batches).
    A float batch is passed through (normalised if ``stats`` is given)."""
    images = TF.to_dtype(images, torch.float32, scale=True)
    if stats is not None:
        images = TF.normalize(images, list(stats[0]), list(stats[1]))
    return images


def augmentation_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for the augmentation of one epoch of one process (independent streams)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class DeviceBatchLoader:
    """Batches ``(images, labels)`` of a split held on the device, augmented with tensor ops.

    An iterable with ``len`` (the number of batches), which Lightning takes as a train,
    val or test loader; ``sampler.set_epoch`` is called by Lightning every epoch.

    Args:
        images: uint8 (or already normalised float) ``(N, C, H, W)`` tensor, on the device
            the batches should be on.
        labels: int ``(N,)`` labels (moved to the images' device).
        batch_size: items per batch; the last batch may be smaller (no drop_last).
        shuffle: a new, seeded permutation every epoch (``seed + epoch``).
        seed: seed of the permutation and of the augmentation.
        crop_padding: reflect-pad by this much and crop back at a random place (0: off).
        hflip: probability of a horizontal flip of each image.
        stats: ``(mean, std)`` to normalise with after scaling uint8 to [0, 1]; None: none.
        rank, world_size: this process's share of a distributed run.
        pk: ``(P, K)``: yield P x K batches of ``PKBatchSampler`` (seeded with ``seed``;
            ``batch_size`` and ``shuffle`` are then unused) instead of slices of a
            permutation.
    """

    # Lightning reads ``sampler`` (to call ``set_epoch``) and then ``batch_sampler`` of a
    # loader that has a sampler; there is none: batches are slices of the epoch's order.
    batch_sampler = None
    # What a DataLoader would report, for code that copies a loader's settings.
    num_workers = 0
    pin_memory = False

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        crop_padding: int = 0,
        hflip: float = 0.0,
        stats: Stats | None = None,
        rank: int = 0,
        world_size: int = 1,
        pk: tuple[int, int] | None = None,
    ) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"images must be (N, C, H, W) with one label each, got {tuple(images.shape)} "
                f"and {len(labels)} labels"
            )
        if batch_size < 1:
            raise LabError(f"batch_size must be a positive integer, got {batch_size}")
        if not 0.0 <= hflip <= 1.0:
            raise LabError(f"hflip is a probability in [0, 1], got {hflip}")
        if crop_padding >= min(images.shape[-2:]) and len(images):
            crop_flip(images[:1], crop_padding)  # raises the LabError
        self.images = images
        self.labels = labels.to(images.device, torch.int64)
        self.batch_size = batch_size
        self.crop_padding, self.hflip, self.stats = crop_padding, hflip, stats
        self.seed, self.rank = seed, rank
        self.pk = pk
        self.sampler: EpochOrder | PKBatchSampler
        if pk is not None:
            host_labels = labels.cpu().numpy()  # once, at construction
            self.sampler = PKBatchSampler(
                host_labels, *pk, seed=seed, rank=rank, world_size=world_size
            )
            self.batch_size = pk[0] * pk[1]
        else:
            self.sampler = EpochOrder(
                len(images), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
            )

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        if self.pk is not None:
            return len(self.sampler)  # batches
        return math.ceil(len(self.sampler) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation and augmentation of ``epoch`` from the next iteration on."""
        self.sampler.set_epoch(epoch)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (with reflect padding) and flip of a uint8 batch, per image."""
        n = len(images)
        offsets = flip = None
        if self.crop_padding:
            high = 2 * self.crop_padding + 1
            offsets = torch.randint(high, (n, 2), generator=generator, device=self.device)
        if self.hflip:
            flip = torch.rand(n, generator=generator, device=self.device) < self.hflip
        if offsets is None and flip is None:
            return images
        return crop_flip(images, self.crop_padding, offsets, flip)

    def batches(self) -> torch.Tensor | list[torch.Tensor]:
        """This epoch's batches of item indices, on the device (one host-to-device copy)."""
        if isinstance(self.sampler, PKBatchSampler):
            rows = list(self.sampler)
            width = self.batch_size
            table = torch.as_tensor(np.asarray(rows, dtype=np.int64).reshape(len(rows), width))
            return table.to(self.device)
        order = self.sampler.indices().to(self.device)
        return list(order.split(self.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self.batches()
        generator = torch.Generator(device=self.device)
        generator.manual_seed(augmentation_seed(self.seed, self.sampler.epoch, self.rank))
        for chosen in batches:
            images = self.augment(self.images.index_select(0, chosen), generator)
            yield to_float(images, self.stats), self.labels.index_select(0, chosen)
