"""What every data module shares: the data root, seeded stratified splits and loaders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from lab.errors import LabError


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder datasets live under: ``root`` if given, else ``$LAB_DATA``, else ``data/``."""
    return Path(root if root is not None else os.environ.get("LAB_DATA", "data"))


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


class LabDataModule(L.LightningDataModule):
    """Base for the project's data modules.

    Subclasses fill ``self.train_set``, ``self.val_set``, ``self.test_set`` in ``setup`` and
    set ``num_classes`` and ``class_names`` in ``__init__`` (the CLI links ``num_classes``
    to the model before ``setup`` runs).
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
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise LabError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise LabError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, split: str, train: bool) -> DataLoader:
        if dataset is None:
            raise LabError(f"{type(self).__name__} has no {split} split; was setup() called?")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", train=False)
