"""A callback base whose batch-end hooks all lead to one method: the callbacks that
collect batch outputs (t-SNE features, test logits, activation images) write what they
keep once, given the stage, rather than one Lightning hook per stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import lightning as L

Stage = Literal["train", "val", "test"]


@dataclass(frozen=True)
class BatchEnd:
    """One finished batch: its stage, what its step returned, the batch and its place."""

    stage: Stage
    outputs: Any
    batch: Any
    batch_idx: int
    dataloader_idx: int = 0

    @property
    def first(self) -> bool:
        """The first batch of the first dataloader."""
        return self.batch_idx == 0 and self.dataloader_idx == 0


class BatchEndCallback(L.Callback):
    """Calls :meth:`on_batch` at the end of every training, validation and test batch;
    subclasses override that one method."""

    def on_batch(self, trainer: L.Trainer, end: BatchEnd) -> None:
        """What to do with a finished batch (nothing here)."""

    # Lightning passes (outputs, batch, batch_idx[, dataloader_idx]) after the module.

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *batch_end: Any
    ) -> None:
        self.on_batch(trainer, BatchEnd("train", *batch_end))

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *batch_end: Any
    ) -> None:
        self.on_batch(trainer, BatchEnd("val", *batch_end))

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *batch_end: Any
    ) -> None:
        self.on_batch(trainer, BatchEnd("test", *batch_end))
