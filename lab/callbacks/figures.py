"""What every figure-making callback (and ``lab report``/``lab sweep``) shares: saving a
PNG atomically, finding the logger that takes figures, and naming the classes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L


def save_figure_atomically(figure: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG via a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            figure.savefig(handle, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def figure_writer(trainer: L.Trainer) -> Any | None:
    """The experiment of the first logger that can take figures (TensorBoard), if any."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            return experiment
    return None


def task_class_names(pl_module: L.LightningModule, at_least: int) -> list[str]:
    """The task's class names, or the indices when it has fewer than ``at_least``."""
    names = pl_module.class_names() if hasattr(pl_module, "class_names") else []
    if len(names) < at_least:
        names = [str(i) for i in range(at_least)]
    return list(names)
