"""Checkpoints whose ``last.ckpt`` is always the latest state of the run, each written
atomically (:class:`AtomicCheckpointIO`)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lab.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes every checkpoint (``last.ckpt``, the best, top-k)
    to a temporary file in the checkpoint's own folder and renames it over the target
    (``lab.io.atomic_path``): a write that fails (a full disk, SIGKILL) leaves the previous
    file as it was and no temporary file behind. Lightning's own atomic save writes its
    temporary file in the system temp folder (``fsspec``'s transaction), so its "rename"
    is a copy across file systems, and it holds the whole checkpoint in memory first."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` through a temporary file and a rename."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        # Through a Python handle: an OSError of the disk (ENOSPC) keeps its errno.
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)


class LastAndBestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that rewrites ``last.ckpt`` at every save point.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was saved in the same
    step, so with a monitored metric ``last.ckpt`` lags behind any epoch that did not
    improve: a resumed run would silently repeat epochs and ``lab test --ckpt_path last``
    would test an older model.
    """

    def _save_last_if_behind(self, trainer: L.Trainer) -> None:
        # _should_skip_saving_checkpoint is also true when this step is already saved.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)
