"""Runs that survive interruption and divergence without losing what they had.

- :class:`Interruption`: when a fit stops on SIGTERM (Lightning raises its
  ``SIGTERMException`` after the current batch), Ctrl+C or a crash, the state after the
  last completed step is saved as ``checkpoints/last.ckpt`` (Lightning writes checkpoints
  through a temporary file), so ``lab fit --config X --ckpt_path last`` continues the same
  run: same folder, epoch and step counters, optimizer, scheduler and every module buffer
  (e.g. the center-loss centers). Lightning resumes mid-epoch by counting the batches
  already done, so the resumed run ends at the same step and epoch as an uninterrupted one.
- :class:`DivergenceGuard`: a non-finite loss (or gradient) stops the run with a
  :class:`NonFiniteLossError` naming the step and the last finite values, and nothing is
  saved over the last good checkpoint; or, with ``action="skip"``, that optimizer step is
  dropped (its gradients discarded) and counted in ``train/skipped_steps``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lab.errors import LabError


class NonFiniteLossError(LabError):
    """Training produced a NaN or infinite loss or gradient (the run diverged)."""


def _describe(exception: BaseException) -> str:
    if isinstance(exception, SIGTERMException):
        return "SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return "Ctrl+C (SIGINT)"
    return f"{type(exception).__name__}: {exception}"


def _any_process(trainer: L.Trainer, flag: bool) -> bool:
    """True if ``flag`` is true on any process (under DDP every process must take the same
    branch: one that raised alone would leave the others waiting in a collective)."""
    if trainer.world_size > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bool(flag), all=False))
    return bool(flag)


class Interruption(L.Callback):
    """Saves ``last.ckpt`` when a fit is interrupted or crashes (see the module docstring).

    A divergence (:class:`NonFiniteLossError`) saves nothing: its weights may already be
    non-finite and the last good checkpoint must stay as it is.
    """

    def __init__(self) -> None:
        self.saved: Path | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.saved = None
        for logger in trainer.loggers:  # the metrics logged so far reach metrics.csv
            try:
                logger.save()
            except Exception as error:
                rank_zero_warn(f"could not flush {type(logger).__name__}: {error}")
        if trainer.state.fn != "fit" or isinstance(exception, NonFiniteLossError):
            return
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        if trainer.fast_dev_run or dirpath is None or trainer.global_step == 0:
            return
        if trainer.world_size > 1 and not isinstance(exception, SIGTERMException):
            # Saving is collective: only SIGTERM (which Lightning broadcasts) stops every
            # process together; after a crash in one, the others would wait forever.
            return
        path = Path(dirpath) / "last.ckpt"
        previous = checkpoint.last_model_path
        # Recorded before saving, so that the resumed ModelCheckpoint owns this file and
        # overwrites it, rather than writing last-v1.ckpt beside it.
        checkpoint.last_model_path = str(path)
        try:
            trainer.save_checkpoint(path)
        except Exception as error:  # a full disk: keep the older last.ckpt, say so
            checkpoint.last_model_path = previous
            rank_zero_warn(f"could not save {path} after the interruption: {error}")
            return
        self.saved = path
        if trainer.is_global_zero:  # on stderr, where the user is looking when a run stops
            print(
                f"lab: {_describe(exception)} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: saved {path}; continue with the same command and "
                "--ckpt_path last",
                file=sys.stderr,
                flush=True,
            )


class DivergenceGuard(L.Callback):
    """Stops (or skips) a training step whose loss or gradients are not finite.

    Args:
        action: ``stop`` raises :class:`NonFiniteLossError` (printed by ``lab`` as one line:
            the epoch, step and batch, the bad value, the last finite loss and its step,
            and which checkpoint is intact); ``skip`` discards that step's gradients so the
            optimizer leaves the weights as they are, logs ``train/skipped_steps`` and
            carries on.
        max_skips: with ``skip``, stop anyway after this many consecutive skipped steps.
        check_gradients: also check the gradients' norm before each optimizer step (a
            finite loss can still give infinite gradients). It reads every gradient once
            a step, so by default only ``skip`` does it (a step must not reach the weights);
            with ``stop``, non-finite weights show as a non-finite loss one step later,
            before anything is saved.
    """

    def __init__(
        self,
        action: Literal["stop", "skip"] = "stop",
        max_skips: int = 10,
        check_gradients: bool | None = None,
    ) -> None:
        if action not in ("stop", "skip"):
            raise LabError(f"divergence.action must be 'stop' or 'skip', got {action!r}")
        if max_skips < 1:
            raise LabError(f"divergence.max_skips must be at least 1, got {max_skips}")
        self.action = action
        self.max_skips = max_skips
        self.check_gradients = action == "skip" if check_gradients is None else check_gradients
        self.last_finite: tuple[int, float] | None = None  # (step, loss)
        self.skipped = 0
        self._consecutive = 0
        self._bad: str | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._bad = None
        self._batch_idx = batch_idx
        if self.action == "skip":  # a NaN batch also poisons BatchNorm's running statistics
            self._buffers = [
                (b, b.detach().clone()) for b in pl_module.buffers() if b.is_floating_point()
            ]

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        value = float(loss.detach().float())
        here = not math.isfinite(value)
        if _any_process(trainer, here):
            self._diverged(trainer, f"loss {value}" if here else "loss on another process")
        else:
            self.last_finite = (trainer.global_step, value)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._bad is None and self.check_gradients:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
            grads = [g for g in grads if g is not None]
            # AMP's fp16 scaler skips steps with overflowing gradients by itself
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            if grads and scaler is None:
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
                )
                here = not bool(torch.isfinite(norm))
                if _any_process(trainer, here):
                    where = f" {float(norm)}" if here else " on another process"
                    self._diverged(trainer, f"gradient norm{where}")
        if self._bad is not None:  # skip: no update from this step
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():  # after backward, which may still need the old ones
                for buffer, saved in getattr(self, "_buffers", []):
                    buffer.copy_(saved)
            self.skipped += 1
            self._consecutive += 1
            pl_module.log("train/skipped_steps", float(self.skipped), on_step=False, on_epoch=True)
        else:
            self._consecutive = 0

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Before an epoch-end checkpoint: weights made non-finite by a step whose loss was
        still finite must not be saved over the last good checkpoint."""
        if trainer.sanity_checking or self.check_gradients:
            return  # with gradient checks no such step reached the weights
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if _any_process(trainer, bool(bad)):
            bad = bad or ["on another process"]
            self._batch_idx = getattr(self, "_batch_idx", -1)
            self._consecutive = self.max_skips  # a step cannot be undone now: stop
            self._diverged(trainer, f"weights ({bad[0]} and {len(bad) - 1} more)")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module)

    def _diverged(self, trainer: L.Trainer, what: str) -> None:
        self._bad = what
        if self.action == "skip" and self._consecutive < self.max_skips:
            rank_zero_warn(
                f"non-finite {what} at step {trainer.global_step}: step skipped "
                f"({self.skipped + 1} so far)"
            )
            return
        last = (
            f"the last finite loss was {self.last_finite[1]:.6g} at step {self.last_finite[0]}"
            if self.last_finite is not None
            else "no step had a finite loss"
        )
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none yet"
        skipped = f" after {self._consecutive} skipped steps" if self.action == "skip" else ""
        raise NonFiniteLossError(
            f"training diverged: non-finite {what} at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step} (batch {self._batch_idx}){skipped}; {last}. The last "
            f"checkpoint ({checkpoint}) is kept as it was: lower the learning rate, add "
            "gradient clipping (--trainer.gradient_clip_val) or --divergence.action=skip, "
            "and resume with --ckpt_path last"
        )
