"""Results on file: one CSV row per measured run or benchmark, and the README tables made
from them.

``results/runs.csv`` holds a row per run (``lab record RUN``: the experiment, the run
folder, the headline test metrics, epochs, fit wall time, the machine, torch, the commit
and the command, read from the run folder's ``metrics.csv`` and ``run.json``);
``results/benchmarks.csv`` a row per benchmark figure (``record_benchmark``). The
README's result tables sit between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``
and are rewritten from these files by ``lab record --tables`` (``make results-tables``);
a test fails when they disagree, so every number there says how and where it was made.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.io import atomic_write_text
from lab.runs.layout import latest_run, log_root, read_run_info
from lab.runs.metrics import summarize
from lab.runs.predictions import PREDICTIONS_FILE, read_predictions
from lab.runs.stats import format_interval, wilson_interval

RUN_COLUMNS = [
    "experiment", "run", "test_acc", "test_acc_low", "test_acc_high", "test_images", "knn_acc",
    "precision_at_1", "map_at_r", "best_val_acc", "epochs", "fit_seconds", "machine", "torch",
    "commit", "command", "date",
]  # fmt: skip
BENCHMARK_COLUMNS = ["name", "figure", "unit", "machine", "torch", "commit", "command", "date"]
# summarize()'s keys -> the columns of runs.csv.
_FROM_SUMMARY = {
    "test/acc": "test_acc",
    "test/knn_acc": "knn_acc",
    "test/precision_at_1": "precision_at_1",
    "test/map_at_r": "map_at_r",
    "best val/acc": "best_val_acc",
    "epochs": "epochs",
    "fit seconds": "fit_seconds",
}
# What each experiment of a table trains (the table's second column).
OBJECTIVES = {
    "demo": "cross-entropy, label smoothing 0.1",
    "demo-triplet": "batch-hard triplet alone, margin 0.2, 64-d L2-normalised embedding, "
    "P x K = 10 x 8",
    "demo-center": "cross-entropy + 0.1 x center loss, centers' rate 0.5",
    "fmnist-ce": "cross-entropy, label smoothing 0.1",
    "fmnist-triplet": "batch-hard triplet alone, margin 0.2, 64-d L2-normalised embedding, "
    "P x K = 10 x 8 mined in groups of 10 x 2",
    "fmnist-center": "cross-entropy + 0.01 x center loss, centers' rate 0.5",
    "fmnist-long-cpu": "cross-entropy, label smoothing 0.1; a wider CNN (585k parameters), "
    "crops, flips and random erasing, 60 epochs",
}
TABLE_EXPERIMENTS = {
    "demo": ("demo", "demo-triplet", "demo-center"),
    "fmnist": ("fmnist-ce", "fmnist-triplet", "fmnist-center", "fmnist-long-cpu"),
}
# The Fashion-MNIST benchmark's published test accuracies (zalandoresearch/fashion-mnist),
# shown beside ours in the fmnist table; measured there, not here.
FMNIST_PUBLISHED = (
    ("humans", 0.835),
    ("best scikit-learn classifier (SVC on pixels)", 0.897),
    ("AlexNet + triplet loss", 0.899),
    ("2-conv CNN", 0.916),
    ("HOG + SVM", 0.926),
    ("GoogLeNet, cross-entropy", 0.937),
    ("ResNet-18", 0.949),
    ("WRN-28-10 + random erasing", 0.963),
    ("WRN-40-4", 0.967),
)


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the result files are: ``path`` if given, else ``$LAB_RESULTS``, else ``results/``."""
    return Path(path if path is not None else os.environ.get("LAB_RESULTS", "results"))


def machine(accelerator: str | None = None, devices: int | None = None) -> str:
    """This machine in words: the GPU's name for a CUDA run, else the CPU model and cores."""
    import torch

    if accelerator and "cuda" in accelerator.lower():
        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "a CUDA GPU"
        return f"{devices} x {name}" if devices and devices > 1 else name
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def _commit(git: dict[str, Any] | None) -> str:
    git = git or {}
    commit = str(git.get("commit") or "unknown")[:12]
    return f"{commit}+dirty" if git.get("dirty") else commit


def run_row(run_dir: Path) -> dict[str, Any]:
    """The runs.csv row of a run folder (tested: it must have test metrics and run.json)."""
    run_dir = Path(run_dir)
    summary = summarize(run_dir)
    info = read_run_info(run_dir)
    if not info:
        raise LabError(
            f"{run_dir} has no run.json (a fast_dev_run, or not a `lab fit` run folder): "
            f"only complete runs are recorded"
        )
    if "test/acc" not in summary and "test/knn_acc" not in summary:
        raise LabError(
            f"{run_dir} has no test metrics: run `lab test --config <its config> --ckpt_path "
            f"last` first, then record it"
        )
    row: dict[str, Any] = {"experiment": run_dir.parent.name, "run": run_dir.as_posix()}
    row.update({column: summary.get(key) for key, column in _FROM_SUMMARY.items()})
    row.update(_accuracy_interval(run_dir))
    mtime = (run_dir / "run.json").stat().st_mtime
    row.update(
        machine=machine(info.get("accelerator"), info.get("devices")),
        torch=info.get("versions", {}).get("torch", "unknown"),
        commit=_commit(info.get("git")),
        command=" && ".join(info.get("commands", [])),
        date=datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d"),
    )
    return row


def _accuracy_interval(run_dir: Path) -> dict[str, Any]:
    """The 95% Wilson interval of test accuracy and the number of test images, from the
    run's ``predictions.csv`` (blank for a run tested before lab wrote one)."""
    if not (run_dir / PREDICTIONS_FILE).is_file():
        return {"test_acc_low": None, "test_acc_high": None, "test_images": None}
    table = read_predictions(run_dir)
    correct = int((table["target"] == table["prediction"]).sum())
    low, high = wilson_interval(correct, len(table))
    return {"test_acc_low": low, "test_acc_high": high, "test_images": len(table)}


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A results CSV (an empty one with ``columns`` if the file is not there yet)."""
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path, dtype={"commit": str})
    if missing := [c for c in columns if c not in table]:
        raise LabError(f"{path} lacks the columns {missing}: is it a lab results file?")
    return table


def _append(path: Path, columns: list[str], row: dict[str, Any], same: list[str]) -> None:
    """Append ``row`` to the CSV at ``path`` (atomically), replacing a row equal on ``same``."""
    table = read_csv(path, columns)
    if len(table):
        keep = ~(table[same].astype(str) == pd.Series(row)[same].astype(str)).all(axis=1)
        table = table[keep]
    new = pd.DataFrame([row], columns=columns)
    table = new if table.empty else pd.concat([table, new], ignore_index=True)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())


def record_run(run_dir: Path, results: Path | None = None) -> dict[str, Any]:
    """Append a run's row to ``runs.csv`` (a second record of the same run replaces it)."""
    row = run_row(run_dir)
    _append(results_dir(results) / "runs.csv", RUN_COLUMNS, row, ["run", "fit_seconds", "commit"])
    return row


def record_benchmark(
    name: str, figure: float, unit: str, command: str, results: Path | None = None
) -> dict[str, Any]:
    """Append one benchmark figure to ``benchmarks.csv``, with this machine and commit."""
    # Imported here, not at the top: `lab record` itself needs neither torch nor Lightning.
    import torch

    from lab.callbacks.run_record import git_state

    accelerator = "cuda" if "cuda" in command or "gpu" in command else None
    row = {
        "name": name,
        "figure": figure,
        "unit": unit,
        "machine": machine(accelerator),
        "torch": torch.__version__,
        "commit": _commit(git_state()),
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    same = ["name", "machine", "commit", "command"]
    _append(results_dir(results) / "benchmarks.csv", BENCHMARK_COLUMNS, row, same)
    return row


# -- tables ---------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return "" if pd.isna(value) else f"{100 * float(value):.2f}%"


def _num(value: Any, fmt: str) -> str:
    return "" if pd.isna(value) else format(float(value), fmt)


def _with_interval(row: pd.Series) -> str:
    """Test accuracy with its Wilson interval, when the row has one."""
    if pd.isna(row["test_acc"]):
        return ""
    low, high = row.get("test_acc_low"), row.get("test_acc_high")
    if pd.isna(low) or pd.isna(high):
        return _pct(row["test_acc"])
    return format_interval(float(row["test_acc"]), float(low), float(high))


def _short_commit(commit: Any) -> str:
    """The commit's first 7 hex digits, keeping the ``+dirty`` of a run made with
    uncommitted changes."""
    text = str(commit)
    return text[:7] + ("+dirty" if text.endswith("+dirty") else "")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def runs_table(name: str, runs: pd.DataFrame) -> str:
    """The Markdown table ``name`` (demo, fmnist) from runs.csv: the newest row of each
    of its experiments, in the table's order."""
    header = ["id", "objective", "test top-1 [95% CI]", "kNN", "precision@1", "MAP@R", "epochs"]
    header += ["fit wall time", "machine", "commit"]
    rows = []
    for experiment in TABLE_EXPERIMENTS[name]:
        mine = runs[runs["experiment"] == experiment]
        if mine.empty:  # listed all the same: the table shows what is still to be measured
            blank = [""] * (len(header) - 3)
            rows.append([f"`{experiment}`", OBJECTIVES.get(experiment, ""), "not recorded", *blank])
            continue
        r = mine.iloc[-1]
        rows.append(
            [
                f"`{experiment}`",
                OBJECTIVES.get(experiment, ""),
                _with_interval(r),
                _pct(r["knn_acc"]),
                _pct(r["precision_at_1"]),
                _num(r["map_at_r"], ".4f"),
                _num(r["epochs"], ".0f"),
                "" if pd.isna(r["fit_seconds"]) else f"{float(r['fit_seconds']):.1f} s",
                str(r["machine"]),
                f"`{_short_commit(r['commit'])}`",
            ]
        )
    if name == "fmnist":
        blank = [""] * (len(header) - 3)
        rows += [["published", method, _pct(acc), *blank] for method, acc in FMNIST_PUBLISHED]
    return _markdown(header, rows)


def benchmarks_table(benchmarks: pd.DataFrame) -> str:
    """The benchmarks table: the newest figure of each benchmark and machine, one row per
    command that printed them (``lab bench startup`` gives one row of ten figures)."""
    if benchmarks.empty:
        return "_No benchmark recorded in results/benchmarks.csv yet._"
    newest = benchmarks.drop_duplicates(["name", "machine"], keep="last")
    rows = []
    keys = ["command", "machine", "commit"]
    for (command, machine_, commit), group in newest.groupby(keys, sort=False):
        names = group["name"].astype(str).tolist()
        values = [f"{float(f):g} {u}" for f, u in zip(group["figure"], group["unit"], strict=True)]
        if len(names) == 1:
            name, figures = names[0], values[0]
        else:  # one row: the names' common stem, then each figure under what tells it apart
            common = os.path.commonprefix(names)
            stem = common[: common.rfind("-") + 1] if "-" in common else ""
            name = stem.rstrip("-") or names[0]
            figures = "; ".join(
                f"{n.removeprefix(stem)} {v}" for n, v in zip(names, values, strict=True)
            )
        rows.append([name, figures, str(machine_), f"`{_short_commit(commit)}`", f"`{command}`"])
    return _markdown(["benchmark", "figure", "machine", "commit", "command"], rows)


def render_tables(results: Path | None = None) -> dict[str, str]:
    """Every table's Markdown, by marker name, from the files in ``results``."""
    folder = results_dir(results)
    runs = read_csv(folder / "runs.csv", RUN_COLUMNS)
    benchmarks = read_csv(folder / "benchmarks.csv", BENCHMARK_COLUMNS)
    tables = {name: runs_table(name, runs) for name in TABLE_EXPERIMENTS}
    tables["benchmarks"] = benchmarks_table(benchmarks)
    return tables


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- results:{name} -->\n)(.*?)(<!-- /results:{name} -->)", re.DOTALL)


def marked_blocks(text: str) -> dict[str, str]:
    """The content between each ``<!-- results:NAME -->`` pair of markers, by NAME."""
    names = re.findall(r"<!-- results:([\w-]+) -->", text)
    found = {}
    for name in names:
        match = _block(name).search(text)
        if match is None:
            raise LabError(f"<!-- results:{name} --> has no closing <!-- /results:{name} -->")
        found[name] = match.group(2)
    return found


def update_text(text: str, tables: dict[str, str]) -> str:
    """``text`` with every marked block replaced by its table."""
    for name in marked_blocks(text):
        if name not in tables:
            raise LabError(f"unknown results table {name!r}: expected one of {sorted(tables)}")
        text = _block(name).sub(lambda m, n=name: m.group(1) + tables[n] + "\n" + m.group(3), text)
    return text


def write_tables(readme: Path, results: Path | None = None) -> list[str]:
    """Rewrite the marked tables of ``readme`` from ``results``; the names of those changed."""
    text = readme.read_text()
    new = update_text(text, render_tables(results))
    before, after = marked_blocks(text), marked_blocks(new)
    if new != text:
        atomic_write_text(readme, new)
    return [name for name in after if before[name] != after[name]]


def main(argv: Sequence[str] | None = None) -> None:
    """``lab record RUN [RUN ...]`` and ``lab record --tables``."""
    parser = argparse.ArgumentParser(
        prog="lab record",
        description="Append runs' rows to results/runs.csv; --tables rewrites the README's "
        "result tables from results/.",
    )
    parser.add_argument("runs", nargs="*", help="run folders, or experiment names (newest run)")
    parser.add_argument("--results", default=None, help="default: $LAB_RESULTS or results/")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    parser.add_argument("--tables", action="store_true", help="rewrite README.md's tables")
    parser.add_argument("--readme", default="README.md", type=Path)
    args = parser.parse_args(argv)
    if not args.runs and not args.tables:
        raise LabError("lab record needs run folders (or experiment names), or --tables")
    for target in args.runs:
        run = Path(target)
        if not (run / "metrics.csv").is_file():
            run = latest_run(log_root(args.log_root) / target)
            if run is None:
                raise LabError(f"{target} is neither a run folder nor an experiment with runs")
        row = record_run(run, args.results)
        print(f"recorded {row['run']}: test acc {_pct(row['test_acc']) or '-'}, {row['machine']}")
    if args.tables:
        if not args.readme.is_file():
            raise LabError(f"{args.readme} not found: run from the repository root or --readme")
        changed = write_tables(args.readme, args.results)
        print(f"{args.readme}: {', '.join(changed) or 'no'} tables changed")
