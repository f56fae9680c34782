"""Run folders: ``<log root>/<experiment>/version_N/``, finding them, and what they hold.

- ``layout``: the folder layout, the newest run (``last:<experiment>``), ``run.json``;
- ``checkpoints``: ``--ckpt_path last`` / ``best`` resolved, a checkpoint file checked;
- ``metrics``: the registry of headline metrics, how a table shows them, a run's
  headline numbers (``summarize``);
- ``folders``: run folders named on the command line (``demo``, ``sweeps/x``, a path);
- ``predictions``: a split's predictions file and the intervals of its metrics;
- ``stats``: confidence intervals and paired tests.
"""

from lab.runs.checkpoints import (
    CKPT_CONVERT,
    best_checkpoint,
    check_checkpoint,
    resolve_checkpoint,
)
from lab.runs.folders import find_runs, is_run_dir, resolve_run, run_ids, runs_below
from lab.runs.layout import (
    latest_checkpoint,
    latest_run,
    log_root,
    read_run_info,
    run_dir_of_checkpoint,
    versions,
)
from lab.runs.metrics import METRICS, Metric, format_cell, format_table, summarize

__all__ = [
    "CKPT_CONVERT",
    "METRICS",
    "Metric",
    "best_checkpoint",
    "check_checkpoint",
    "find_runs",
    "format_cell",
    "format_table",
    "is_run_dir",
    "latest_checkpoint",
    "latest_run",
    "log_root",
    "read_run_info",
    "resolve_checkpoint",
    "resolve_run",
    "run_dir_of_checkpoint",
    "run_ids",
    "runs_below",
    "summarize",
    "versions",
]
