"""``lab study FILE``: a multi-run study written as data, run by ``lab``.

A study file (``experiments/_studies/<id>.yaml``, the ``make <id>`` target) lists its
runs, then the steps that close it::

    description: "Digits on the CPU: CE vs triplet vs center loss"  # make help's line
    fashion_mnist: true          # optional: every run reads Fashion-MNIST (--fashion_mnist)
    studies: [fmnist-layerwise]  # optional: other studies of the folder, run whole first
    runs:
      - config: demo.yaml        # experiments/demo.yaml, run name demo (its stem)
      - config: q1-triplet.yaml
        name: q1-grayscale-triplet
        args: [--config, experiments/_base/grayscale.yaml]
      - sweep: cifar-frozen      # lab sweep of experiments/_sweeps/cifar-frozen.yaml
    summary: {runs: [demo, demo-triplet], min: [test/acc=0.98]}  # runs: default the fits
    report: {runs: [demo, demo-triplet], out: lightning_logs/reports/demo}
    compare: [[demo, demo-triplet]]

Each run is ``lab fit --config experiments/<config> --experiment <name> <args>
--then_test last`` (the test of its last.ckpt in the same process), run in this process
one after the other; the first that fails stops the study with one line naming it.
``--dry_run`` prints the ``lab`` commands instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError

KEYS = ("description", "fashion_mnist", "studies", "runs", "summary", "report", "compare")
FIT_KEYS, SWEEP_KEYS = {"config", "name", "args"}, {"sweep", "final"}  # the two kinds of run
Step = tuple[str, list[str]]  # (what it is, for an error: "run demo-triplet"; lab arguments)


def fashion_mnist_default() -> list[str]:
    """The Fashion-MNIST arguments of a plain ``lab study``: the Debian package's folder
    when it is installed, else none (the module's own default then applies)."""
    from lab.data.fashion_mnist import FashionMNISTDataModule  # torchvision: only when needed

    folder = Path(FashionMNISTDataModule.debian_folder)
    return [f"--data.init_args.folder={folder}"] if folder.is_dir() else []


def load_study(path: Path) -> dict[str, Any]:
    """The study file's map, its keys checked."""
    if not path.is_file():
        raise LabError(f"study file {path} does not exist (expected a YAML of runs)")
    try:
        study = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise LabError(f"{path} is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(study, dict):
        raise LabError(f"{path}: expected a map with keys {', '.join(KEYS)}")
    unknown = sorted(set(study) - set(KEYS))
    if unknown:
        raise LabError(f"{path}: unknown key {', '.join(unknown)}; expected {', '.join(KEYS)}")
    if not isinstance(study.get("description"), str):
        raise LabError(f"{path}: expected description: <one line for make help>")
    if not study.get("runs") and not study.get("studies"):
        raise LabError(f"{path}: expected runs: [...] (or studies: [...]), a list of runs")
    return study


def _strings(path: Path, where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise LabError(f"{path}: {where} must be a list of strings, got {value!r}")
    return [str(v) for v in value]


def run_steps(path: Path, study: dict[str, Any], data: list[str]) -> tuple[list[Step], list[str]]:
    """The ``lab`` arguments of each run (a fit or a sweep), and the fits' run names."""
    experiments = path.parent.parent
    runs = study.get("runs") or []
    if not isinstance(runs, list):
        raise LabError(f"{path}: runs must be a list of maps (config, name, args)")
    steps: list[Step] = []
    names: list[str] = []
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        keys = set(run) if isinstance(run, dict) else set()
        if not ({"config"} <= keys <= FIT_KEYS or {"sweep"} <= keys <= SWEEP_KEYS):
            raise LabError(
                f"{path}: {where} must be a map with config: <file in experiments/> (and "
                f"optional name:, args: [...]) or sweep: <id> (and final: true), got {run!r}"
            )
        if "sweep" in run:
            sweep = str(run["sweep"])
            config, grid = experiments / f"{sweep}.yaml", experiments / "_sweeps" / f"{sweep}.yaml"
            for needed in (config, grid):
                if not needed.is_file():
                    raise LabError(f"{path}: {where}: sweep {sweep} needs {needed}, not found")
            final = ["--final"] if run.get("final") else []
            args = ["sweep", "--config", str(config), "--grid_file", str(grid), *final]
            steps.append((f"sweep {sweep}", args))
            continue
        config = experiments / str(run["config"])
        if config.suffix != ".yaml" or not config.is_file():
            raise LabError(f"{path}: {where}: {config} not found (expected an experiment YAML)")
        name = str(run.get("name") or config.stem)
        extra = _strings(path, f"{where}.args", run.get("args", []))
        fit = ["fit", "--config", str(config), "--experiment", name, *data, *extra]
        steps.append((f"run {name}", [*fit, "--then_test", "last"]))
        names.append(name)
    return steps, names


def closing_steps(path: Path, study: dict[str, Any], names: list[str]) -> list[Step]:
    """``lab summary``, ``lab report`` and ``lab compare`` of the study's runs."""
    steps: list[Step] = []
    summary, report = study.get("summary"), study.get("report")
    for key, value in (("summary", summary), ("report", report)):
        if value is not None and not isinstance(value, dict):
            raise LabError(f"{path}: {key} must be a map (runs: [...]), got {value!r}")
    if summary is not None:
        runs = _strings(path, "summary.runs", summary.get("runs", names))
        floors = _strings(path, "summary.min", summary.get("min", []))
        steps.append(("summary", ["summary", *runs, *(a for f in floors for a in ("--min", f))]))
    if report is not None:
        runs = _strings(path, "report.runs", report.get("runs", names))
        if not isinstance(report.get("out"), str):
            raise LabError(f"{path}: report needs out: <folder>, e.g. lightning_logs/reports/x")
        steps.append(("report", ["report", *runs, "--out", report["out"]]))
    for pair in study.get("compare") or []:
        pair = _strings(path, "each compare", pair)
        if len(pair) != 2:
            raise LabError(f"{path}: each compare must be a pair [run_a, run_b], got {pair}")
        steps.append(("compare", ["compare", *pair]))
    return steps


def plan(
    path: Path, fashion_mnist: list[str] | None = None, seen: tuple[Path, ...] = ()
) -> list[Step]:
    """Every step of the study, its ``studies:`` first, in the order they run."""
    if path.resolve() in seen:
        raise LabError(f"{path}: the study includes itself (through studies:)")
    study = load_study(path)
    data: list[str] = []
    if study.get("fashion_mnist"):
        data = fashion_mnist_default() if fashion_mnist is None else fashion_mnist
    steps: list[Step] = []
    for other in _strings(path, "studies", study.get("studies", [])):
        steps += plan(path.parent / f"{other}.yaml", fashion_mnist, (*seen, path.resolve()))
    runs, names = run_steps(path, study, data)
    return steps + runs + closing_steps(path, study, names)


def run(path: Path, steps: list[Step]) -> None:
    """Each step in turn (its output shown as it comes); the first failure ends the study."""
    from lab.commands.sweep.grid import run_lab  # imports lab.cli: only when running

    for what, args in steps:
        print(f"lab study: {shlex.join(['lab', *args])}", file=sys.stderr, flush=True)
        code, message = run_lab(args, echo=True)
        if code >= 128:  # stopped by a signal: last.ckpt is saved, say no more
            raise SystemExit(code)
        if code != 0:
            raise LabError(f"study {path}: {what} failed (exit {code}): {message}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or with ``--dry_run`` print) every step of a study file."""
    parser = argparse.ArgumentParser(prog="lab study", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="the study, e.g. experiments/_studies/demo.yaml")
    parser.add_argument("--dry_run", action="store_true", help="print the lab commands only")
    parser.add_argument(
        "--fashion_mnist",
        default=None,
        metavar="ARGS",
        help="the data arguments of a fashion_mnist study's runs, e.g. "
        "--fashion_mnist=--data.init_args.download=true (default: "
        "--data.init_args.folder=/usr/share/datasets/fashion-mnist when that folder exists)",
    )
    args = parser.parse_args(argv)
    data = None if args.fashion_mnist is None else shlex.split(args.fashion_mnist)
    steps = plan(args.file, data)
    if args.dry_run:
        print("\n".join(shlex.join(["lab", *step]) for _, step in steps))
        return
    run(args.file, steps)
