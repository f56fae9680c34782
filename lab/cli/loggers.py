"""The run folder's two loggers: a CSV logger that keeps what the folder already holds (so
resumed runs append), and a TensorBoard logger whose Scalars page holds only curves and
that claims its ``version_N`` folder atomically (``lab.runs.layout.claim_run_dir``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from lab.io import atomic_path
from lab.runs.layout import claim_run_dir, versions


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing ``metrics.csv``; this one continues it. Each
    save writes the whole table to a temporary file that is renamed over ``metrics.csv``
    (Lightning appends in place: a full disk would leave half a row)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(header)

    def save(self) -> None:
        """Add the rows logged since the last save to ``metrics.csv``, atomically."""
        if not self.metrics:
            return
        self._record_new_keys()  # the header is written whole every time
        path = Path(self.metrics_file_path)
        rows: list[dict[str, Any]] = []
        if path.is_file():
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
            writer.writerows(self.metrics)
        self.metrics = []


class AppendingCSVLogger(CSVLogger):
    """``metrics.csv`` in the run folder; a resumed or later ``lab test`` run appends to it.

    ``same_folder_as``: a logger whose version this one takes, when first asked (so a
    run whose loggers never write, e.g. ``fast_dev_run``, claims no folder)."""

    def __init__(self, *args: Any, same_folder_as: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._same_folder_as = same_folder_as

    def _get_next_version(self) -> int:
        if self._same_folder_as is not None:
            return self._same_folder_as.version
        return super()._get_next_version()

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


# Logged for metrics.csv, but constants or counters, not curves: TensorBoard would open on
# their charts (``epoch``, then ``params/*``) above the train / val / test ones.
_NOT_CURVES = ("epoch",)
_CONSTANTS = "params/"


class CurvesTensorBoardLogger(TensorBoardLogger):
    """TensorBoard's Scalars page opens on the train / val / test curves: Lightning's
    ``epoch`` counter is left to ``metrics.csv``, and constants (the parameter counts,
    ``params/*``) go to the Text tab as one table."""

    def _get_next_version(self) -> int:
        """The run's ``version_N``, claimed by creating the folder (Lightning's own listing
        gives two launches in the same second the same number). Other DDP ranks, started
        after rank 0 claimed its folder, take the newest one and create nothing; what
        they write (checkpoints, ``trainer.log_dir``) follows rank 0's folder anyway."""
        experiment_dir = Path(self.root_dir)
        if rank_zero_only.rank != 0:
            found = versions(experiment_dir)
            return found[-1][0] if found else 0
        return int(claim_run_dir(experiment_dir).name.removeprefix("version_"))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        constants = {k: v for k, v in metrics.items() if k.startswith(_CONSTANTS)}
        curves = {k: v for k, v in metrics.items() if k not in _NOT_CURVES and k not in constants}
        if constants:
            rows = "\n".join(f"| {k} | {float(v):,.0f} |" for k, v in sorted(constants.items()))
            self.experiment.add_text("parameters", f"| count | value |\n|---|---|\n{rows}", step)
        if curves:
            super().log_metrics(curves, step)
