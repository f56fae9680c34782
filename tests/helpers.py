"""Test support shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

import lightning as L


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
