"""Fault-injection callbacks for the reliability tests, addressable from a config
(``--trainer.callbacks+={"class_path": "tests.faults.SignalAt", ...}``)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
from pathlib import Path

import lightning as L
import torch


class SignalAt(L.Callback):
    """Sends a signal to this process after the training step that reaches ``step``."""

    def __init__(self, step: int, signum: int = int(signal.SIGTERM)) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class RaiseAt(L.Callback):
    """Raises ``KeyboardInterrupt`` (Ctrl+C) or a ``RuntimeError`` (a crash) after the
    training step that reaches ``step``."""

    def __init__(self, step: int, kind: str = "crash") -> None:
        self.step = step
        self.kind = kind

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt if self.kind == "ctrl_c" else RuntimeError("injected crash")


class PoisonAt(L.Callback):
    """Fills the images of the batch of ``step`` with NaN (a NaN loss follows), after
    writing the sha256 of ``last.ckpt`` at that moment to ``record`` (if given)."""

    def __init__(self, step: int, record: str | None = None) -> None:
        self.step = step
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.record is not None:
            last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
            Path(self.record).write_text(hashlib.sha256(last.read_bytes()).hexdigest())
        images = batch[0]
        with torch.no_grad():
            images.fill_(float("nan"))


class CorruptWeightsAt(L.Callback):
    """Sets one weight to NaN after the training step that reaches ``step`` (as a step
    with a finite loss but an infinite gradient would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")


class _FullDisk:
    """Pickled after the tensors of a checkpoint: the write fails part-way, as on a full disk."""

    def __reduce__(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDiskAt(L.Callback):
    """From the training step that reaches ``step`` on, every checkpoint write fails with
    ``ENOSPC`` part-way through, inside the trainer's own checkpoint IO (so its temporary
    file, rename and clean-up are the ones under test)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def full(checkpoint, path, storage_options=None):
            save({**checkpoint, "zz_fault": _FullDisk()}, path, storage_options)

        io.save_checkpoint = full
