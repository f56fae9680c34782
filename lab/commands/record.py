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
from filelock import FileLock

from lab.errors import LabError
from lab.io import atomic_write_text
from lab.runs.layout import latest_run, log_root, read_run_info
from lab.runs.metrics import BY_NAME, RECORDED, format_cell, summarize
from lab.runs.objective import experiment_objective
from lab.runs.predictions import PREDICTIONS_FILE, read_predictions
from lab.runs.stats import wilson_interval


def _metric_columns() -> list[str]:
    """The columns of runs.csv the recorded metrics fill (lab.runs.metrics.RECORDED): each
    one's, then for test accuracy its Wilson interval and the number of test images."""
    columns = []
    for metric in RECORDED:
        columns.append(metric.record)
        if metric.name == "test/acc":
            columns += [f"{metric.record}_low", f"{metric.record}_high", "test_images"]
    return columns


RUN_COLUMNS = [
    "experiment",
    "run",
    *_metric_columns(),
    "machine",
    "torch",
    "commit",
    "command",
    "date",
]
BENCHMARK_COLUMNS = ["name", "figure", "unit", "machine", "torch", "commit", "command", "date"]
# The README tables' metrics, after the id and the objective.
TABLE_METRICS = (
    "test/acc",
    "test/knn_acc",
    "test/precision_at_1",
    "test/map_at_r",
    "epochs",
    "fit seconds",
)
# What a table's experiment sets up besides its objective (the objective itself is derived
# from its YAML's loss terms: lab.runs.objective), after the objective in the table.
SETUPS = {
    "demo-triplet": "64-d L2-normalised embedding, P x K = 10 x 8",
    "fmnist-triplet": "64-d L2-normalised embedding, P x K = 10 x 8",
    "fmnist-long-cpu": "a wider CNN (585k parameters), crops, flips and random erasing, 60 epochs",
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
    row.update({metric.record: summary.get(metric.name) for metric in RECORDED})
    row.update(_accuracy_interval(run_dir))
    mtime = (run_dir / "run.json").stat().st_mtime
    row.update(
        machine=machine(info.get("accelerator"), info.get("devices")),
        torch=info.get("versions", {}).get("torch", "unknown"),
        commit=_commit(info.get("git")),
        # A fit with --then_test records its one command for both stages: said once.
        command=" && ".join(dict.fromkeys(info.get("commands", []))),
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
    """Append ``row`` to the CSV at ``path`` (atomically), replacing a row equal on ``same``.

    The read, change and rename happen under a lock file beside it (``.<name>.lock``): two
    ``lab record`` processes at once would otherwise each rewrite the table they read,
    and the first one's row would be lost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(f".{path.name}.lock")):
        _append_locked(path, columns, row, same)


def _append_locked(path: Path, columns: list[str], row: dict[str, Any], same: list[str]) -> None:
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


def _cell(name: str, row: pd.Series) -> str:
    """The README cell of metric ``name`` of a runs.csv row (a percentage for a share; test
    accuracy with its Wilson interval when the row has one)."""
    column = BY_NAME[name].record
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    return format_cell(name, row[column], low, high, prose=True)


def _short_commit(commit: Any) -> str:
    """The commit's first 7 hex digits, keeping the ``+dirty`` of a run made with
    uncommitted changes."""
    text = str(commit)
    return text[:7] + ("+dirty" if text.endswith("+dirty") else "")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def objective(experiment: str, experiments: Path = Path("experiments")) -> str:
    """The objective column of a table's experiment: the words of its YAML's loss terms
    (``lab.runs.objective``), then what else it sets up (:data:`SETUPS`)."""
    words = experiment_objective(experiments / f"{experiment}.yaml") or ""
    return "; ".join(part for part in (words, SETUPS.get(experiment, "")) if part)


def runs_table(name: str, runs: pd.DataFrame, experiments: Path = Path("experiments")) -> str:
    """The Markdown table ``name`` (demo, fmnist) from runs.csv: the newest row of each
    of its experiments, in the table's order; the objectives from their YAMLs in
    ``experiments``."""
    metrics = [BY_NAME[name] for name in TABLE_METRICS]
    labels = [m.label + (" [95% CI]" if m.interval else "") for m in metrics]
    header = ["id", "objective", *labels, "machine", "commit"]
    rows = []
    for experiment in TABLE_EXPERIMENTS[name]:
        mine = runs[runs["experiment"] == experiment]
        if mine.empty:  # listed all the same: the table shows what is still to be measured
            blank = [""] * (len(header) - 3)
            words = objective(experiment, experiments)
            rows.append([f"`{experiment}`", words, "not recorded", *blank])
            continue
        r = mine.iloc[-1]
        rows.append(
            [
                f"`{experiment}`",
                objective(experiment, experiments),
                *(_cell(name, r) for name in TABLE_METRICS),
                str(r["machine"]),
                f"`{_short_commit(r['commit'])}`",
            ]
        )
    if name == "fmnist":
        blank = [""] * (len(header) - 3)
        rows += [
            ["published", method, format_cell("test/acc", acc, prose=True), *blank]
            for method, acc in FMNIST_PUBLISHED
        ]
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


def render_tables(
    results: Path | None = None, experiments: Path = Path("experiments")
) -> dict[str, str]:
    """Every table's Markdown, by marker name, from the files in ``results`` (and the
    objectives of the experiment files in ``experiments``)."""
    folder = results_dir(results)
    runs = read_csv(folder / "runs.csv", RUN_COLUMNS)
    benchmarks = read_csv(folder / "benchmarks.csv", BENCHMARK_COLUMNS)
    tables = {name: runs_table(name, runs, experiments) for name in TABLE_EXPERIMENTS}
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
    """Rewrite the marked tables of ``readme`` from ``results`` (the objectives from the
    ``experiments/`` beside it); the names of those changed."""
    text = readme.read_text()
    new = update_text(text, render_tables(results, Path(readme).parent / "experiments"))
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
        accuracy = format_cell("test/acc", row["test_acc"], prose=True) or "-"
        print(f"recorded {row['run']}: test acc {accuracy}, {row['machine']}")
    if args.tables:
        if not args.readme.is_file():
            raise LabError(f"{args.readme} not found: run from the repository root or --readme")
        changed = write_tables(args.readme, args.results)
        print(f"{args.readme}: {', '.join(changed) or 'no'} tables changed")
