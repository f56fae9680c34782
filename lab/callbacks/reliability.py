"""Runs that survive interruption and divergence without losing what they had.

- :class:`Interruption`: when a fit stops on SIGTERM (Lightning raises its
  ``SIGTERMException`` after the current batch), Ctrl+C or a crash, the state after the
  last completed step is saved as ``checkpoints/last.ckpt`` (Lightning writes checkpoints
  through a temporary file), so ``lab fit --config X --ckpt_path last`` continues the same
  run: same folder, epoch and step counters, optimizer, scheduler and every module buffer
  (e.g. the center-loss centers). Lightning resumes mid-epoch by counting the batches
  already done, so the resumed run ends at the same step and epoch as an uninterrupted one.
  A fit that stops on a failed write (a full disk, a read-only folder: ``WriteError``)
  saves nothing more, and the newest intact checkpoint is named in the line ``lab`` prints.
- :class:`DivergenceGuard`: a non-finite loss (or gradient) stops the run with a
  :class:`NonFiniteLossError` naming the step and the last finite values, and nothing is
  saved over the last good checkpoint; or, with ``action="skip"``, that optimizer step is
  dropped (its gradients discarded) and counted in ``train/skipped_steps``. With ``stop``
  the loss is checked on the device and looked at only every ``check_every_n_steps``
  steps (and before every checkpoint and validation), so a training step does not wait
  for the GPU; ``skip`` must decide at every step, so it looks every step.
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

from lab.errors import LabError, write_error


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
        self._save(trainer, exception)
        # What `lab` prints after a failed write (lab.errors.WriteError) names the newest
        # checkpoint still intact: every write is atomic, so last.ckpt if there is one.
        exception.lab_last_checkpoint = _last_good(trainer)  # type: ignore[attr-defined]

    def _save(self, trainer: L.Trainer, exception: BaseException) -> None:
        # A full disk or read-only folder: another write would fail the same way and only
        # add warnings to the one line `lab` prints (every earlier file is intact).
        storage = write_error(exception, writing=True) is not None
        for logger in trainer.loggers:  # the metrics logged so far reach metrics.csv
            try:
                logger.save()
            except Exception as error:
                if not storage:
                    rank_zero_warn(f"could not flush {type(logger).__name__}: {error}")
        if trainer.state.fn != "fit" or isinstance(exception, NonFiniteLossError) or storage:
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


def _last_good(trainer: L.Trainer) -> Path | None:
    """The run's ``last.ckpt``, else its best checkpoint, if on disk."""
    checkpoint = trainer.checkpoint_callback
    dirpath = getattr(checkpoint, "dirpath", None)
    candidates = [Path(dirpath) / "last.ckpt"] if dirpath else []
    if best := getattr(checkpoint, "best_model_path", ""):
        candidates.append(Path(best))
    return next((path for path in candidates if path.is_file()), None)


class DivergenceGuard(L.Callback):
    """Stops (or skips) a training step whose loss or gradients are not finite.

    Args:
        action: ``stop`` raises :class:`NonFiniteLossError` (printed by ``lab`` as one line:
            the epoch, step and batch of the first non-finite loss (unscaled under
            ``16-mixed``), the step of the check that found it, the last finite loss and
            its step, and which checkpoint is intact); ``skip`` discards that step's
            gradients so the optimizer leaves the weights as they are, logs
            ``train/skipped_steps`` and carries on.
        max_skips: with ``skip``, stop anyway after this many consecutive skipped steps.
        check_gradients: also check the gradients' norm before each optimizer step (a
            finite loss can still give infinite gradients). It reads every gradient once
            a step, so by default only ``skip`` does it (a step must not reach the weights);
            with ``stop``, non-finite weights show as a non-finite loss one step later,
            before anything is saved.
        check_every_n_steps: with ``stop``, how often the host looks at the loss: every
            step's loss is tested on the device (no host sync), and the result is read
            (under DDP: reduced over the processes) every this many optimizer steps, at
            the end of every epoch, before validation and before any checkpoint is
            saved. A run that diverges stops at the next of these points; what it
            reports is the first non-finite step. 1 looks every step.
    """

    def __init__(
        self,
        action: Literal["stop", "skip"] = "stop",
        max_skips: int = 10,
        check_gradients: bool | None = None,
        check_every_n_steps: int = 50,
    ) -> None:
        if action not in ("stop", "skip"):
            raise LabError(f"divergence.action must be 'stop' or 'skip', got {action!r}")
        if max_skips < 1:
            raise LabError(f"divergence.max_skips must be at least 1, got {max_skips}")
        if check_every_n_steps < 1:
            raise LabError(
                f"divergence.check_every_n_steps must be at least 1, got {check_every_n_steps}"
            )
        self.action = action
        self.max_skips = max_skips
        self.check_gradients = action == "skip" if check_gradients is None else check_gradients
        self.check_every_n_steps = check_every_n_steps
        self.last_finite: tuple[int, float] | None = None  # (step, loss)
        self.skipped = 0
        self._consecutive = 0
        self._bad: str | None = None
        self._pending = LossWindow()

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
        value = unscaled(trainer, loss)
        where = (trainer.current_epoch, trainer.global_step, self._batch_idx)
        if self.action == "stop":  # on the device; looked at in check()
            self._pending.add(value, where)
            return
        number = float(value)
        here = not math.isfinite(number)
        if _any_process(trainer, here):
            self._diverged(trainer, f"loss {number}" if here else "loss on another process")
        else:
            self.last_finite = (trainer.global_step, number)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.check_every_n_steps == 0 and step != getattr(self, "_checked", None):
            self._checked = step  # once per optimizer step (gradient accumulation)
            self.check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.check(trainer)  # raising here keeps a diverged state out of every checkpoint

    def check(self, trainer: L.Trainer) -> None:
        """Read the losses tested on the device since the last check (one host sync) and
        stop on the first non-finite one (on any process under DDP)."""
        found = self._pending.read()
        if found is None:
            return
        first_bad, last_good = found
        if last_good is not None:
            self.last_finite = last_good
        here = first_bad is not None
        if _any_process(trainer, here):
            if here:
                value, (epoch, step, batch_idx) = first_bad
                what, where = f"loss {value}", (epoch, step, batch_idx)
            else:
                what, where = "loss on another process", None
            self._diverged(trainer, what, where, found_at=trainer.global_step)

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
            self.check(trainer)
            self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)
        self._check_weights(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def _diverged(
        self,
        trainer: L.Trainer,
        what: str,
        where: tuple[int, int, int] | None = None,
        found_at: int | None = None,
    ) -> None:
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
        epoch, step, batch_idx = where or (
            trainer.current_epoch,
            trainer.global_step,
            getattr(self, "_batch_idx", -1),
        )
        if found_at is not None and found_at != step:
            skipped += f" (found by the check at step {found_at})"
        raise NonFiniteLossError(
            f"training diverged: non-finite {what} at epoch {epoch}, step "
            f"{step} (batch {batch_idx}){skipped}; {last}. The last "
            f"checkpoint ({checkpoint}) is kept as it was: lower the learning rate, add "
            "gradient clipping (--trainer.gradient_clip_val) or --divergence.action=skip, "
            "and resume with --ckpt_path last"
        )


def unscaled(trainer: L.Trainer, loss: torch.Tensor) -> torch.Tensor:
    """The loss as the task computed it, detached, fp32, on its device: under ``16-mixed``
    Lightning hands ``on_before_backward`` the loss times the gradient scaler's scale,
    which is divided out here on the device (``GradScaler.get_scale`` would sync)."""
    value = loss.detach().float()
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scale = getattr(scaler, "_scale", None)
    if isinstance(scale, torch.Tensor):
        value = value / scale.to(value.device).float().reshape(())
    elif scaler is not None and hasattr(scaler, "get_scale"):
        value = value / scaler.get_scale()
    return value


class LossWindow:
    """The losses since the last check, tested on the device: the first non-finite one
    and the last finite one before it, as device tensors, with the host's ``(epoch, step,
    batch)`` of each loss in a list (plain ints, no sync). ``read`` syncs once."""

    def __init__(self) -> None:
        self.where: list[tuple[int, int, int]] = []
        self.state: dict[str, torch.Tensor] | None = None

    def add(self, value: torch.Tensor, where: tuple[int, int, int]) -> None:
        """Record one loss (a 0-d fp32 tensor) without looking at it."""
        if self.state is None:
            device = value.device
            self.state = {
                "count": torch.zeros((), dtype=torch.int64, device=device),
                "bad_at": torch.full((), -1, dtype=torch.int64, device=device),
                "bad": torch.zeros((), device=device),
                "good_at": torch.full((), -1, dtype=torch.int64, device=device),
                "good": torch.zeros((), device=device),
            }
        state = self.state
        value = value.reshape(())
        finite = torch.isfinite(value)
        clean = state["bad_at"] < 0  # nothing bad before this loss
        first = clean & ~finite
        state["bad_at"] = torch.where(first, state["count"], state["bad_at"])
        state["bad"] = torch.where(first, value, state["bad"])
        good = clean & finite
        state["good_at"] = torch.where(good, state["count"], state["good_at"])
        state["good"] = torch.where(good, value, state["good"])
        state["count"] += 1
        self.where.append(where)

    def read(
        self,
    ) -> tuple[tuple[float, tuple[int, int, int]] | None, tuple[int, float] | None] | None:
        """``(first bad (value, where) or None, last good (step, value) or None)`` of the
        losses since the last read, and start a new window; None when there were none."""
        if self.state is None or not self.where:
            return None
        state, where = self.state, self.where
        numbers = torch.stack(
            [
                state["bad_at"].double(),
                state["bad"].double(),
                state["good_at"].double(),
                state["good"].double(),
            ]
        ).tolist()  # the one sync
        self.state, self.where = None, []
        bad_at, bad, good_at, good = numbers
        first_bad = (bad, where[int(bad_at)]) if bad_at >= 0 else None
        last_good = (where[int(good_at)][1], good) if good_at >= 0 else None
        return first_bad, last_good
