"""What the figure-making callbacks ask of the trainer: the run folder, the logger that
takes figures, and the class names (drawing and saving are :mod:`lab.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def run_dir(trainer: L.Trainer) -> Path | None:
    """The run folder, as ``trainer.log_dir`` gives it but without its broadcast: that
    property is a collective call under DDP, so code that only rank 0 runs (writing
    files) would hang there waiting for the other ranks."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if trainer.loggers:
        first = trainer.loggers[0]
        folder = (
            first.log_dir if isinstance(first, (TensorBoardLogger, CSVLogger)) else first.save_dir
        )
    else:
        folder = trainer.default_root_dir
    return Path(folder) if folder is not None else None


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
