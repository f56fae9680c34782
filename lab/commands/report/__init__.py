"""``lab report [TARGETS ...] [--out DIR]``: one Markdown report of runs, no TensorBoard needed.

::

    lab report                       # every run under the log root
    lab report demo demo-triplet     # the newest run of each experiment
    lab report lightning_logs/sweeps/margin --out report-margin

A target is a run folder (it holds ``metrics.csv`` or ``config.yaml``), an experiment
name or folder (its newest ``version_N``) or any other folder (every run found below it).
``<out>/report.md`` holds, in order: the results table (also ``results.csv``: one row per
run with its status, the settings that differ between the runs, the test metrics), notes
on runs that died half-way, each run's loss and accuracy curves with a comparison of every
run's validation curves, and the figures the runs wrote (t-SNE, confusion matrix, ...)
side by side. Figures are copied into ``<out>/figures/<run>/`` so the folder can be moved.
A damaged run (no or truncated ``metrics.csv``, no test, no ``run.json``, a ``config.yaml``
that does not parse) is reported as far as its files go, with a warning on stderr.
"""

from __future__ import annotations

from lab.commands.report.document import main, write_report
from lab.commands.report.figures import (
    FIGURE_PATTERNS,
    epoch_curves,
    log_scale_if_wide,
    run_figures,
)
from lab.commands.report.reading import (
    Run,
    load_run,
    read_config,
    read_info,
    read_metrics,
)
from lab.commands.report.tables import (
    differing_settings,
    flatten,
    results_table,
    setting_names,
    to_markdown,
)
from lab.runs.folders import find_runs, is_run_dir, run_ids, runs_below

__all__ = [
    "FIGURE_PATTERNS",
    "Run",
    "log_scale_if_wide",
    "differing_settings",
    "epoch_curves",
    "find_runs",
    "flatten",
    "is_run_dir",
    "load_run",
    "main",
    "read_config",
    "read_info",
    "read_metrics",
    "results_table",
    "run_figures",
    "run_ids",
    "runs_below",
    "setting_names",
    "to_markdown",
    "write_report",
]
