"""``report.md`` itself and the ``lab report`` command."""

from __future__ import annotations

import argparse
import io
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from lab.commands.report.figures import (
    copy_atomically,
    epoch_curves,
    image_html,
    image_tables,
    plot_comparison,
    plot_curves,
    run_figures,
)
from lab.commands.report.paired import paired_section
from lab.commands.report.reading import Run, load_run
from lab.commands.report.tables import metrics_markdown, results_table, settings_markdown
from lab.io import atomic_write_text
from lab.runs.folders import find_runs, run_ids
from lab.runs.layout import log_root


def write_report(runs: Sequence[Run], out: Path, command: str, now: datetime | None = None) -> Path:
    """Write ``report.md``, ``results.csv``, the curves and the copied figures into
    ``out``; returns the path of ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now()
    width = 420 if len(runs) > 1 else 640
    table = results_table(runs)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(out / "results.csv", buffer.getvalue())

    lines = [
        f"# Report of {len(runs)} run{'s' if len(runs) != 1 else ''}",
        "",
        f"Made {now:%Y-%m-%d %H:%M:%S} by `{command}` in `{Path.cwd()}`.",
        "",
        "## Results",
        "",
        "Settings: each run's objective in words, the config values that differ between "
        "these runs, plus the learning rate and `max_epochs`. Metrics: test metrics after "
        "`lab test` with their 95% interval in brackets (Wilson for accuracy, a bootstrap "
        "over test images for macro F1 and AUC; docs/uncertainty.md), `best val/acc` over "
        "the epochs. Both also in [results.csv](results.csv).",
        "",
        "### Settings",
        "",
        settings_markdown(table),
        "",
        "### Metrics",
        "",
        metrics_markdown(table),
        "",
    ]
    lines += paired_section(runs)
    damaged = [run for run in runs if run.notes]
    if damaged:
        lines += ["## Notes", ""]
        lines += [f"- `{run.id}` ({run.status}): {'; '.join(run.notes)}." for run in damaged]
        lines.append("")

    curves = {}
    for run in runs:
        frame = epoch_curves(run.metrics) if run.metrics is not None else pd.DataFrame()
        if not frame.empty:
            curves[run.id] = frame
    lines += ["## Curves", ""]
    if curves:
        plot_comparison(curves, out / "comparison.png")
        lines += [
            "Validation accuracy and loss of every run:",
            "",
            image_html("comparison.png", 900),
            "",
            "Each run's training and validation loss and accuracy:",
            "",
        ]
        cells: dict[str, str | None] = {}
        for run in runs:
            if run.id in curves:
                relative = f"figures/{run.id}/curves.png"
                plot_curves(curves[run.id], run.id, out / relative)
                cells[run.id] = image_html(relative, width)
            else:
                cells[run.id] = None
        lines += [image_tables(cells), ""]
    else:
        lines += ["No run logged a training or validation epoch.", ""]

    figures = {run.id: run_figures(run.path) for run in runs}
    kinds = list(dict.fromkeys(kind for found in figures.values() for kind in found))
    lines += ["## Figures", ""]
    if not kinds:
        lines += ["No run wrote figures (t-SNE, confusion matrix, ...).", ""]
    for kind in kinds:
        cells = {}
        for run in runs:
            source = figures[run.id].get(kind)
            if source is None:
                cells[run.id] = None
                continue
            flat = source.relative_to(run.path).as_posix().replace("/", "_")
            relative = f"figures/{run.id}/{flat}"
            copy_atomically(source, out / relative)
            cells[run.id] = image_html(relative, width)
        lines += [f"### {kind}", "", image_tables(cells), ""]

    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Write a Markdown report (tables, curves, figures) of runs into ``--out``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="lab report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "targets",
        nargs="*",
        help="run folders, experiment names or folders holding runs (default: every run "
        "under the log root)",
    )
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    args = parser.parse_args(argv)
    root = log_root(args.log_root)
    out = Path(args.out)
    paths = find_runs(args.targets, root, skip=out)
    runs = [
        load_run(path, run_id) for path, run_id in zip(paths, run_ids(paths, root), strict=True)
    ]
    for run in runs:
        if run.notes:
            print(f"lab report: warning: {run.id}: {'; '.join(run.notes)}", file=sys.stderr)
    report = write_report(runs, out, "lab report " + shlex.join(argv))
    print(f"report: {report}")
