"""Test support shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

import lightning as L


def short_fit(
    epochs: int | None = 1, train_batches: int = 2, val_batches: int = 1, *extra: str
) -> list[str]:
    """``lab fit`` arguments for a fit of seconds: ``epochs`` epochs (None: the config's) of
    ``train_batches`` training batches, each validated on ``val_batches`` batches, then
    ``extra``. The one place the tests' short fits are spelled."""
    epoch = [] if epochs is None else [f"--trainer.max_epochs={epochs}"]
    batches = [
        f"--trainer.limit_train_batches={train_batches}",
        f"--trainer.limit_val_batches={val_batches}",
    ]
    return [*epoch, *batches, *extra]


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A Lightning Trainer that writes and prints nothing of its own (no logger,
    progress bar, model summary or checkpoint) unless ``kwargs`` ask for it."""
    defaults: dict[str, Any] = dict(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return L.Trainer(**{**defaults, **kwargs})
