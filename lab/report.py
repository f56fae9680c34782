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

import argparse
import io
import json
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import yaml

from lab.errors import LabError
from lab.runs import atomic_write_text, latest_run, log_root, summarize, versions

# Always in the results table (blank where a run lacks them), then these when any run has them.
MAIN_COLUMNS = ("test/acc", "test/acc_top5", "best val/acc", "epochs", "fit seconds")
OPTIONAL_COLUMNS = (
    "before/acc",  # before fine-tuning (lab.callbacks.BeforeFitEvaluation)
    "trainable params",
    "test/knn_acc",
    "test/precision_at_1",
    "test/map_at_r",
    "test/macro_f1",
    "test/auc_macro",
)
# Figures a run folder may hold, shown side by side (``*`` patterns: one kind per file
# name; ``tsne_val_epoch*.png``: only each run's last epoch).
FIGURE_PATTERNS = (
    # before/: the test split before fine-tuning (lab.callbacks.BeforeFitEvaluation)
    "before/confusion_matrix.png",
    "confusion_matrix.png",
    "before/per_class_accuracy.png",
    "per_class_accuracy.png",
    "before/roc.png",
    "roc.png",
    "tsne.png",
    "tsne_val_epoch*.png",
    "activations_*.png",
    "pretrain_loss.png",  # layer-wise autoencoder pretraining (lab.tasks.layerwise)
)
LAST_ONLY = {"tsne_val_epoch*.png": "tsne_val_epoch (last)"}
# Config keys that are not settings of the experiment: names, paths, logging, callbacks.
_IGNORED_KEYS = {
    "config",
    "experiment",
    "log_root",
    "ckpt_path",
    "model.class_path",  # the task column
    "trainer.callbacks",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
}
_PATH_SUFFIXES = ("root", "_dir", "dirpath", "_path", "_file", "filename")
_ALWAYS = ("trainer.max_epochs",)  # plus the optimizer's learning rate
_CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")


@dataclass
class Run:
    """What could be read of one run folder, and what could not."""

    path: Path
    id: str
    metrics: pd.DataFrame | None = None
    config: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # short: the status column
    notes: list[str] = field(default_factory=list)  # one sentence each: the Notes list

    @property
    def status(self) -> str:
        """``complete``, or what is missing, e.g. ``no test`` or ``no metrics, no run.json``."""
        return ", ".join(self.problems) if self.problems else "complete"

    def problem(self, short: str, note: str) -> None:
        """Record something missing or broken."""
        self.problems.append(short)
        self.notes.append(note)


# -- finding runs ------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """A run folder holds ``metrics.csv`` or ``config.yaml`` (a run that died early may
    lack one of them)."""
    return (path / "metrics.csv").is_file() or (path / "config.yaml").is_file()


def _natural_key(path: Path) -> list[list[Any]]:
    """Sort by path parts, ``version_2`` before ``version_10``."""
    return [[int(p) if p.isdigit() else p for p in re.split(r"(\d+)", part)] for part in path.parts]


def runs_below(folder: Path, skip: Path | None = None) -> list[Path]:
    """Every run folder below ``folder`` (itself included), in natural path order; the
    folders of a run (``checkpoints/``, ...) and ``skip`` are not searched."""
    found = []
    skip_resolved = skip.resolve() if skip is not None else None
    for current, dirs, _ in os.walk(folder):
        here = Path(current)
        if skip_resolved is not None and here.resolve() == skip_resolved:
            dirs[:] = []
            continue
        if is_run_dir(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found, key=_natural_key)


def find_runs(targets: Sequence[str], root: Path, skip: Path | None = None) -> list[Path]:
    """The run folders a report covers: see the module docstring. ``skip``: a folder not
    to search (the report's own output)."""
    if not targets:
        if not root.is_dir():
            raise LabError(
                f"no runs found under {root}: the log root does not exist; run `lab fit` "
                "first, or give --log_root or run folders"
            )
        targets_paths = [root]
    else:
        targets_paths = []
        for target in targets:
            path = Path(target)
            if not path.is_dir() and (root / target).is_dir():
                path = root / target
            if not path.is_dir():
                raise LabError(
                    f"{target!r} is neither a folder nor an experiment under {root}; give run "
                    "folders, experiment names or folders holding runs"
                )
            targets_paths.append(path)
    runs: list[Path] = []
    for path in targets_paths:
        if is_run_dir(path):
            found = [path]
        elif versions(path):
            found = [latest_run(path)]
        else:
            found = runs_below(path, skip)
        if not found:
            raise LabError(
                f"no runs found under {path}: expected run folders holding metrics.csv or "
                "config.yaml (made by `lab fit`); check the path or --log_root"
            )
        runs.extend(found)
    unique, seen = [], set()
    for run in runs:  # a run named twice is reported once, where first named
        if run.resolve() not in seen:
            seen.add(run.resolve())
            unique.append(run)
    return unique


def run_ids(runs: Sequence[Path], root: Path) -> list[str]:
    """Names of runs: their paths relative to the log root when all are below it, else
    relative to their common parent (at least ``<experiment>/version_N``)."""
    resolved = [run.resolve() for run in runs]
    base = root.resolve()
    if not all(run.is_relative_to(base) and run != base for run in resolved):
        base = Path(os.path.commonpath([run.parent.parent for run in resolved]))
    ids = [run.relative_to(base).as_posix() for run in resolved]
    return [run_id or run.name for run_id, run in zip(ids, resolved, strict=True)]


# -- reading a run -----------------------------------------------------------------------


def read_metrics(run: Run) -> bool:
    """Load ``metrics.csv`` into ``run.metrics``; record what is wrong with it. Returns
    whether the file was intact (then ``summarize`` can read it as is)."""
    path = run.path / "metrics.csv"
    if not path.is_file():
        run.problem(
            "no metrics",
            "no metrics.csv (the run stopped before logging an epoch, or it was removed)",
        )
        return False
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        run.problem("no metrics", f"metrics.csv cannot be read ({error})")
        return False
    intact = True
    if text.strip() and not text.endswith("\n"):
        lines = text.splitlines(keepends=True)
        text = "".join(lines[:-1])
        intact = False
        if len(lines) > 1:
            run.notes.append("metrics.csv ends inside a row (truncated): that row is left out")
            run.problems.append("truncated metrics")
    if not text.strip():
        run.problem("no metrics", "metrics.csv is empty (or cut off inside its header)")
        return False
    try:
        metrics = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        message = str(error).strip().splitlines()[0]
        run.problem("no metrics", f"metrics.csv does not parse ({message})")
        return False
    if metrics.empty:
        run.problem("no metrics", "metrics.csv has a header but no rows")
        return False
    run.metrics = metrics
    return intact


def read_info(run: Run) -> bool:
    """Load ``run.json`` into ``run.info``; returns whether it parsed (or is absent)."""
    path = run.path / "run.json"
    if not path.is_file():
        run.problem("no run.json", "no run.json: the fit did not finish (no wall times)")
        return True
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        run.problem("bad run.json", f"run.json does not parse ({error})")
        return False
    run.info = info
    return True


def read_config(run: Run) -> None:
    """Load ``config.yaml`` into ``run.config``; record a missing or broken one."""
    path = run.path / "config.yaml"
    if not path.is_file():
        run.problem("no config", "no config.yaml: its settings are unknown")
        return
    try:
        config = yaml.safe_load(path.read_text())
        if not isinstance(config, dict):
            raise yaml.YAMLError("not a mapping of keys to values")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        message = " ".join(str(error).split())
        run.problem("bad config", f"config.yaml does not parse ({message})")
        return
    run.config = config


def _last_values(metrics: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    return {
        column: float(metrics[column].dropna().iloc[-1])
        for column in columns
        if column in metrics and metrics[column].notna().any()
    }


def _summarize(run: Run, files_intact: bool) -> dict[str, Any]:
    """``lab.runs.summarize`` of the run folder when its files are intact, else of a clean
    copy of the metrics that could be read (the wall times are then added from run.json)."""
    if files_intact:
        try:
            return summarize(run.path)
        except (ValueError, TypeError, LabError):  # e.g. odd values in run.json
            pass
    with tempfile.TemporaryDirectory() as scratch:
        run.metrics.to_csv(Path(scratch) / "metrics.csv", index=False)
        return summarize(Path(scratch))


def load_run(path: Path, run_id: str) -> Run:
    """Everything the report shows of one run folder, however far its files go."""
    run = Run(path=Path(path), id=run_id)
    metrics_intact = read_metrics(run)
    info_ok = read_info(run)
    read_config(run)
    if run.metrics is not None:
        values = _summarize(run, metrics_intact and info_ok)
        values.update(_last_values(run.metrics, OPTIONAL_COLUMNS))
        has_test = any(c.startswith("test/") and run.metrics[c].notna().any() for c in run.metrics)
        if not has_test:
            run.problem(
                "no test",
                "no test metrics: run `lab test --config <its config> --ckpt_path last`",
            )
    else:
        values = {}
        if "epochs_completed" in run.info:
            values["epochs"] = int(run.info["epochs_completed"])
    values.pop("run", None)
    seconds = run.info.get("seconds", {}) if isinstance(run.info.get("seconds"), dict) else {}
    for stage in ("fit", "test"):
        if isinstance(seconds.get(stage), (int, float)) and f"{stage} seconds" not in values:
            values[f"{stage} seconds"] = round(float(seconds[stage]), 1)
    run.values = values
    return run


# -- settings ----------------------------------------------------------------------------


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _ignored(key: str) -> bool:
    if any(key == k or key.startswith(f"{k}.") for k in _IGNORED_KEYS):
        return True
    last = key.rsplit(".", 1)[-1]
    return last != "class_path" and last.endswith(_PATH_SUFFIXES)


def _is_lr(key: str) -> bool:
    parts = [p for p in key.split(".") if p != "init_args"]
    return len(parts) >= 2 and parts[-1] == "lr" and parts[-2] == "optimizer"


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def setting_names(keys: Sequence[str]) -> dict[str, str]:
    """Readable column names for config keys: the shortest tail of the key (``init_args``
    left out) that no other key shares, e.g. ``lr``, ``center_weight``, ``data.seed``;
    ``...backbone.class_path`` is ``backbone``."""

    def parts(key: str) -> list[str]:
        kept = [p for p in key.split(".") if p != "init_args"]
        if len(kept) > 1 and kept[-1] == "class_path":
            kept = kept[:-1]
        return kept

    split = {key: parts(key) for key in keys}
    names = {}
    for key, own in split.items():
        for n in range(1, len(own) + 1):
            tail = own[-n:]
            if all(other[-n:] != tail for k, other in split.items() if k != key):
                break
        names[key] = ".".join(tail)
    return names


def differing_settings(configs: Sequence[dict[str, Any] | None]) -> list[str]:
    """Config keys to show: those whose values differ between the runs that have a
    config (names, paths, logging and callbacks left out), plus the optimizer's learning
    rate and ``trainer.max_epochs`` always."""
    flats = [flatten(c) for c in configs if c is not None]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    always = [k for k in keys if _is_lr(k)] + [k for k in _ALWAYS if k in keys]
    differ = [
        key
        for key in keys
        if key not in always
        and not _ignored(key)
        and len({_comparable(flat.get(key, "<unset>")) for flat in flats}) > 1
    ]
    return always + differ


def _display(key: str, value: Any) -> Any:
    if key.endswith("class_path") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def results_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: ``run``, ``experiment``, ``task``, ``status``, the settings that
    differ, then the test metrics, best val/acc, epochs and fit seconds."""
    keys = differing_settings([run.config for run in runs])
    reserved = {"run", "experiment", "task", "status", *MAIN_COLUMNS, *OPTIONAL_COLUMNS}
    names = {k: k if n in reserved else n for k, n in setting_names(keys).items()}
    rows = []
    for run in runs:
        config = run.config or {}
        flat = flatten(config)
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        task = str(model.get("class_path", "")).rsplit(".", 1)[-1] or None
        experiment = config.get("experiment") or (
            run.path.parent.name if run.path.name.startswith("version_") else run.path.name
        )
        row: dict[str, Any] = {
            "run": run.id,
            "experiment": experiment,
            "task": task,
            "status": run.status,
        }
        for key in keys:  # blank where the run has no config or no such key
            row[names[key]] = _display(key, flat[key]) if key in flat else None
        for column in MAIN_COLUMNS:
            row[column] = run.values.get(column)
        for column in OPTIONAL_COLUMNS:
            if any(column in r.values for r in runs):
                row[column] = run.values.get(column)
        rows.append(row)
    return pd.DataFrame(rows)


def _format_cell(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("epochs", "trainable params"):
        return f"{int(value):,}" if column == "trainable params" else str(int(value))
    if column.endswith("seconds"):
        return f"{float(value):.1f}"
    if column.startswith(("test/", "before/", "best ")):
        return f"{float(value):.4f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of strings: metrics to 4 decimals, settings as written."""
    shown = table.astype(object).copy()
    for column in shown.columns:
        shown[column] = [_format_cell(column, v) for v in table[column]]
    return shown.to_markdown(index=False, disable_numparse=True)


# -- figures -----------------------------------------------------------------------------


def epoch_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch ``train/loss``, ``val/loss``, ``train/acc``, ``val/acc`` (those logged):
    the CSV logger writes train and val in separate rows of an epoch, and the test rows
    after them, which are left out."""
    columns = [c for c in _CURVES if c in metrics]
    if not columns or "epoch" not in metrics:
        return pd.DataFrame()
    rows = metrics[["epoch", *columns]].dropna(subset=columns, how="all")
    rows = rows.dropna(subset=["epoch"])
    return rows.groupby("epoch").last().sort_index()


def _plot_panel(axes: Any, curves: pd.DataFrame, kind: str) -> bool:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for stage in ("train", "val"):
        column = f"{stage}/{kind}"
        if column in curves and curves[column].notna().any():
            series = curves[column].dropna()
            axes.plot(series.index, series.values, marker="o", markersize=3, label=column)
            drawn = True
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(kind)
    if kind == "loss":
        _log_scale_if_wide(axes)
    if drawn:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, f"no {kind} logged", ha="center", va="center")
    return drawn


def _log_scale_if_wide(axes: Any) -> None:
    """A log y-axis when the plotted values are positive and span more than 100x (e.g. a
    first epoch whose loss dwarfs the rest), so the later epochs stay readable."""
    values = [v for line in axes.get_lines() for v in line.get_ydata() if v == v]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        axes.set_yscale("log")


def plot_curves(curves: pd.DataFrame, title: str, path: Path) -> None:
    """A PNG with two panels: loss (train, val) and accuracy (train, val) against epoch."""
    from lab.callbacks.figures import save_figure_atomically

    plt = _pyplot()
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    try:
        _plot_panel(loss_axes, curves, "loss")
        _plot_panel(acc_axes, curves, "acc")
        loss_axes.set_title("loss")
        acc_axes.set_title("accuracy")
        figure.suptitle(title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomically(figure, path)
    finally:
        plt.close(figure)


def plot_comparison(curves: dict[str, pd.DataFrame], path: Path) -> None:
    """A PNG with every run's ``val/acc`` and ``val/loss`` curves overlaid."""
    from matplotlib.ticker import MaxNLocator

    from lab.callbacks.figures import save_figure_atomically

    plt = _pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    try:
        for axes, column in zip(panels, ("val/acc", "val/loss"), strict=True):
            drawn = False
            for run_id, frame in curves.items():
                if column in frame and frame[column].notna().any():
                    series = frame[column].dropna()
                    axes.plot(series.index, series.values, marker="o", markersize=3, label=run_id)
                    drawn = True
            axes.set_title(column)
            if column.endswith("loss"):
                _log_scale_if_wide(axes)
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            if drawn:
                axes.legend(fontsize=7)
            else:
                axes.text(0.5, 0.5, f"no {column} logged", ha="center", va="center")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomically(figure, path)
    finally:
        plt.close(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    return plt


def _epoch_of(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def run_figures(run_dir: Path) -> dict[str, Path]:
    """The figures of a run folder by kind: the file's path in the run folder (e.g.
    ``roc.png``, ``before/roc.png``), or for ``tsne_val_epoch*.png``
    ``tsne_val_epoch (last)`` with the last epoch's file."""
    found: dict[str, Path] = {}
    for pattern in FIGURE_PATTERNS:
        files = sorted(p for p in run_dir.glob(pattern) if p.is_file())
        if pattern in LAST_ONLY:
            if files:
                found[LAST_ONLY[pattern]] = max(files, key=_epoch_of)
        else:
            for file in files:
                found[file.relative_to(run_dir).as_posix()] = file
    return found


def copy_atomically(source: Path, target: Path) -> None:
    """Copy a file via a temporary file in the target's folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _image(relative: str, width: int) -> str:
    return f'<img src="{quote(relative)}" width="{width}">'


def image_tables(cells: dict[str, str | None], per_table: int = 4) -> str:
    """Markdown tables whose columns are runs and whose cells are images (``—`` for a run
    without one), at most ``per_table`` runs in each."""
    items = list(cells.items())
    tables = []
    for start in range(0, len(items), per_table):
        chunk = dict(items[start : start + per_table])
        frame = pd.DataFrame([{k: v if v else "—" for k, v in chunk.items()}])
        tables.append(frame.to_markdown(index=False, disable_numparse=True))
    return "\n\n".join(tables)


# -- the report --------------------------------------------------------------------------


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
        "Test metrics after `lab test`; `best val/acc` over the epochs; settings: the "
        "config values that differ between these runs, plus the learning rate and "
        "`max_epochs`. Also in [results.csv](results.csv).",
        "",
        to_markdown(table),
        "",
    ]
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
            _image("comparison.png", 900),
            "",
            "Each run's training and validation loss and accuracy:",
            "",
        ]
        cells: dict[str, str | None] = {}
        for run in runs:
            if run.id in curves:
                relative = f"figures/{run.id}/curves.png"
                plot_curves(curves[run.id], run.id, out / relative)
                cells[run.id] = _image(relative, width)
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
            cells[run.id] = _image(relative, width)
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
