"""What every data module shares: the data root, seeded stratified splits and loaders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lab.data.device_loader import DeviceBatchLoader
from lab.data.samplers import PKBatchSampler
from lab.errors import LabError


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder datasets live under: ``root`` if given, else ``$LAB_DATA``, else ``data/``."""
    return Path(root if root is not None else os.environ.get("LAB_DATA", "data"))


def check_fraction(name: str, value: float) -> float:
    """``value`` if strictly between 0 and 1, else a LabError naming ``data.<name>``."""
    if not 0.0 < value < 1.0:
        raise LabError(f"data.{name} must be in (0, 1), got {value}")
    return value


def check_at_least(name: str, value: int | None, minimum: int, unit: str = "") -> int | None:
    """``value`` if unset or at least ``minimum``, else a LabError naming ``data.<name>``."""
    if value is not None and value < minimum:
        raise LabError(f"data.{name} must be at least {minimum}{unit}, got {value}")
    return value


def stratified_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)``: a seeded, stratified hold-out of ``fraction`` of the items."""
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise LabError(f"a split fraction must be strictly between 0 and 1, got {fraction}")
    indices = np.arange(len(labels))
    try:
        keep, held_out = train_test_split(
            indices, test_size=fraction, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError as error:  # too few items per class to stratify
        counts = np.bincount(labels).tolist() if len(labels) else []
        raise LabError(
            f"cannot hold out {fraction:g} of {len(labels)} items stratified by class "
            f"(per-class counts {counts}): {error}"
        ) from error
    return np.sort(keep), np.sort(held_out)


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The label of every item of a dataset, without loading its images."""
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    raise TypeError(f"cannot read the labels of a {type(dataset).__name__} without loading it")


class LabDataModule(L.LightningDataModule):
    """Base for the project's data modules.

    Subclasses fill ``self.train_set``, ``self.val_set``, ``self.test_set`` and
    ``self.reference_set`` (the training images without augmentation, for embedding
    evaluation) in ``setup``, and set ``num_classes`` and ``class_names`` in ``__init__``
    (the CLI links ``num_classes`` to the model before ``setup`` runs).

    Args:
        batch_size: training batch size (``pk_classes * pk_samples`` when those are set).
        eval_batch_size: batch size for validation, test and prediction.
        num_workers: loader worker processes.
        seed: seed of the splits and of the P x K sampler.
        pin_memory: pin loader memory (for GPU training).
        pk_classes, pk_samples: if both set, every training batch holds ``pk_classes``
            classes with ``pk_samples`` images each (``lab.data.samplers.PKBatchSampler``),
            as batch-hard triplet mining needs.
        shuffle: reshuffle the training items every epoch; False keeps the split's own
            order (the same every epoch), for studies of what shuffling does. With
            several processes Lightning's DistributedSampler takes this setting from the
            loader.
        device_data: keep each split on the training device and batch and augment it
            there with tensor ops (``lab.data.device_loader.DeviceBatchLoader``) instead
            of DataLoaders for train, val, test and reference (predict keeps its
            DataLoader); ``num_workers`` and ``pin_memory`` are then unused. Under DDP the
            loaders shard themselves like Lightning's DistributedSampler (nothing to set;
            with ``--trainer.use_distributed_sampler=false`` they do not shard, as
            DataLoaders would not be). With ``pk_classes`` the training loader gives the
            same P x K batches as the DataLoader path, sharded under DDP whatever
            ``use_distributed_sampler`` says (as ``PKBatchSampler`` is).
    """

    num_classes: int
    class_names: list[str]

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        pk_classes: int | None = None,
        pk_samples: int | None = None,
        shuffle: bool = True,
        device_data: bool = False,
    ) -> None:
        super().__init__()
        if (pk_classes is None) != (pk_samples is None):
            raise LabError("set both data.pk_classes and data.pk_samples, or neither")
        if pk_classes is not None and not shuffle:
            raise LabError(
                "data.shuffle=false does not apply to P x K batches (their sampler draws "
                "random classes every epoch): leave data.shuffle on or unset pk_classes"
            )
        if pk_classes is not None and (pk_classes < 2 or pk_samples < 2):
            raise LabError(
                f"P x K batches need at least 2 classes and 2 images per class, "
                f"got pk_classes={pk_classes}, pk_samples={pk_samples}"
            )
        if pk_classes is not None:
            batch_size = pk_classes * pk_samples
        if batch_size < 1:
            raise LabError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise LabError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.pk_classes, self.pk_samples = pk_classes, pk_samples
        self.shuffle = shuffle
        self.device_data = device_data
        # Splits already on the device: (the objects they were made from, kept alive so
        # their ids stay theirs, the tensors), by ``device_key``.
        self._on_device: dict[tuple, tuple[object, torch.Tensor, torch.Tensor]] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.reference_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, split: str, train: bool) -> DataLoader:
        if dataset is None:
            raise LabError(f"{type(self).__name__} has no {split} split; was setup() called?")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            # Under DDP, Lightning replaces the sampler by a DistributedSampler whose
            # shuffle is read from this loader (``_is_dataloader_shuffled``).
            shuffle=train and self.shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatchLoader:
        if self.device_data:
            return self._device_loader(self.train_set, "train", True, (TrainerFn.FITTING,))
        if self.pk_classes is None:
            return self._loader(self.train_set, "train", train=True)
        return self._pk_loader()

    # -- the device-resident path (device_data) -------------------------------------------

    def device_key(self, dataset: Dataset) -> tuple:
        """What identifies the images of ``dataset`` (equal keys share one device copy)."""
        return (id(dataset),)

    def device_tensors(
        self, dataset: Dataset, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W), labels (N,))`` of a split, on ``device``, ready to batch.

        Here the tensors of a ``TensorDataset`` (already normalised floats; on the CPU
        the very same tensors, no copy); ``ImageDataModule`` gives uint8 images,
        channel-converted and resized, written chunk by chunk into one tensor on the
        device (no second full-size copy in host memory).
        """
        if isinstance(dataset, TensorDataset):
            return dataset.tensors[0].to(device), dataset.tensors[1].to(device)
        raise TypeError(f"data.device_data cannot hold a {type(dataset).__name__} on the device")

    def device_batch_options(self, train: bool) -> dict:
        """The ``DeviceBatchLoader`` options that finish a batch: augmentation (``train``)
        and normalisation. None here: ``device_tensors`` are final."""
        return {}

    def _device(self) -> torch.device:
        # Lightning requests the loaders once the model is on its device.
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _shard(self, stages: tuple[TrainerFn, ...]) -> tuple[int, int]:
        """``(rank, world_size)`` for a loader Lightning requests while running one of
        ``stages``; ``(0, 1)`` when one process runs, when Lightning would not add a
        DistributedSampler, or when a callback asks for the loader itself (as
        ``BeforeFitEvaluation`` does for the whole test split)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1 or trainer.state.fn not in stages:
            return 0, 1
        if not trainer._accelerator_connector.use_distributed_sampler:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _device_loader(
        self, dataset: Dataset | None, split: str, train: bool, stages: tuple[TrainerFn, ...]
    ) -> DeviceBatchLoader:
        if dataset is None:
            raise LabError(f"{type(self).__name__} has no {split} split; was setup() called?")
        device = self._device()
        key = (*self.device_key(dataset), str(device))
        if key not in self._on_device:
            images, labels = self.device_tensors(dataset, device)
            self._on_device[key] = (dataset, images, labels)
        _, images, labels = self._on_device[key]
        pk = None
        if train and self.pk_classes is not None and split == "train":  # not "unlabeled"
            pk = (self.pk_classes, self.pk_samples)
            rank, world_size = self._pk_shard()
        else:
            rank, world_size = self._shard(stages)
        return DeviceBatchLoader(
            images,
            labels,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and self.shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pk=pk,
            **self.device_batch_options(train),
        )

    def _pk_shard(self) -> tuple[int, int]:
        """``(rank, world_size)`` of the P x K batches: every process of a distributed run
        takes its own share of one epoch's batches (``PKBatchSampler``)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _pk_loader(self) -> DataLoader:
        if self.train_set is None:
            raise LabError(f"{type(self).__name__} has no train split; was setup() called?")
        rank, world_size = 0, 1
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            if trainer._accelerator_connector.use_distributed_sampler:
                raise LabError(
                    "P x K batches split themselves across processes: add "
                    "--trainer.use_distributed_sampler=false"
                )
            rank, world_size = trainer.global_rank, trainer.world_size
        sampler = PKBatchSampler(
            dataset_targets(self.train_set),
            self.pk_classes,
            self.pk_samples,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def reference_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """The training images without augmentation, in order: the reference set that
        test embeddings are classified and retrieved against (whole on every process)."""
        split = "reference (train, unaugmented)"
        if self.device_data:
            return self._device_loader(self.reference_set, split, False, ())
        return self._loader(self.reference_set, split, train=False)

    def val_dataloader(self) -> DataLoader | DeviceBatchLoader:
        if self.device_data:
            stages = (TrainerFn.FITTING, TrainerFn.VALIDATING)
            return self._device_loader(self.val_set, "val", False, stages)
        return self._loader(self.val_set, "val", train=False)

    def test_dataloader(self) -> DataLoader | DeviceBatchLoader:
        if self.device_data:
            return self._device_loader(self.test_set, "test", False, (TrainerFn.TESTING,))
        return self._loader(self.test_set, "test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", train=False)
