"""``lab sweep``: run one experiment over a grid of settings and compare them in one table.

::

    lab sweep --config experiments/q2-tiny50-triplet.yaml --grid 'model.margin=[0.1,0.2,0.5]'
    lab sweep --config experiments/q1-center.yaml --grid_file experiments/sweeps/q1-center.yaml

Each setting is fit (then tested on its last checkpoint) as its own run,
``<log root>/sweeps/<name>/<setting>/version_N/``; a setting that fails is recorded as
failed and the sweep goes on (and exits 1 at the end, so ``make`` sees it). Every
setting is checked against the config parser before the first one runs, so a key that
does not exist stops the sweep at once. The sweep
folder ends with ``sweep.csv`` and ``sweep.md`` (one row per setting: the swept values,
status, the headline metrics), ``sweep.png`` (the first swept key against the chosen
metrics, one line per combination of the other keys) and ``sweep_curves.png`` /
``sweep_curves.csv``: every setting's ``train_step/loss``, ``train_step/acc`` and
``grad_norm/total`` over the optimizer steps and its ``val/acc`` per epoch, one line per
setting (those metrics the runs logged; see ``Classifier(step_metrics=True)`` and the
``GradientNorms`` callback).

With ``--seeds N`` each setting runs N times, with ``seed_everything`` 0 .. N-1, as
``<setting>/seed-<i>/version_N``; ``sweep.csv`` keeps one row per run, ``sweep_seeds.csv``
and the top of ``sweep.md`` one per setting (mean ± standard deviation and n of each
metric, ranked by the mean of the first ``--metrics``), and ``sweep.png`` has error bars
of one standard deviation. Two settings whose means differ by less than their spread
are not told apart by the sweep (docs/uncertainty.md).

The grid file format and how a setting becomes ``lab`` arguments: :mod:`lab.commands.sweep.grid`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lab.commands.report import setting_names
from lab.commands.sweep.curves import (
    EPOCH_CURVES,
    STEP_CURVES,
    curve_table,
    plot_curves,
    write_curves,
)
from lab.commands.sweep.grid import (
    Setting,
    check_settings,
    describe,
    expand,
    load_grid_file,
    parse_grid_argument,
    run_lab,
    setting_overrides,
    slug,
    swept_keys,
)
from lab.commands.sweep.seeds import aggregate_seeds, plot_sweep, seeds_markdown
from lab.errors import LabError
from lab.io import atomic_write_text
from lab.runs.layout import latest_run, log_root, read_run_info
from lab.runs.metrics import SEED_METRICS, format_table, summarize
from lab.runs.predictions import run_intervals

__all__ = [
    "EPOCH_CURVES",
    "STEP_CURVES",
    "aggregate_seeds",
    "best_setting",
    "check_settings",
    "curve_table",
    "describe",
    "expand",
    "load_grid_file",
    "main",
    "parse_grid_argument",
    "plot_curves",
    "plot_sweep",
    "run_final",
    "run_sweep",
    "slug",
    "write_curves",
]


def _record(root: Path, experiment: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the headline numbers of the newest run of ``experiment`` (and the
    95% intervals of those that have one), when it logged any."""
    run = latest_run(root / experiment)
    if run is not None and (run / "metrics.csv").is_file():
        summary = summarize(run)
        summary["run"] = str(run.relative_to(root))
        record.update(summary)
        for metric, (_, low, high) in run_intervals(run).items():
            if metric in summary:
                record[f"{metric} low"], record[f"{metric} high"] = low, high
    return record


def run_sweep(
    configs: list[str],
    settings: list[Setting],
    name: str,
    root: Path,
    extra: Sequence[str] = (),
    test: bool = True,
    seeds: int = 0,
    rank_by: str = "test/acc",
) -> pd.DataFrame:
    """Fit (and test) every setting as its own run under ``root/sweeps/name``; return the
    table that is also written to ``sweep.csv`` and ``sweep.md``: one row per run. With
    ``seeds`` N >= 1 each setting runs N times, with ``seed_everything`` 0 .. N-1, as
    ``<setting>/seed-<i>/version_N`` (column ``seed``)."""
    base = [arg for config in configs for arg in ("--config", config)] + list(extra)
    check_settings(base, settings)
    sweep_dir = root / "sweeps" / name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    names = setting_names(swept_keys(settings))
    plan = [(s, seed) for s in settings for seed in (range(seeds) if seeds else [None])]
    records = []
    for i, (setting, seed) in enumerate(plan, 1):
        experiment = f"sweeps/{name}/{slug(setting)}"
        overrides = setting_overrides(base, setting)
        if seed is not None:
            experiment += f"/seed-{seed}"
            overrides.append(f"--seed_everything={seed}")
        common = [*base, *overrides, "--experiment", experiment, "--log_root", str(root)]
        told = setting if seed is None else {**setting, "seed": seed}
        print(f"lab sweep: [{i}/{len(plan)}] {told}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        status, error = fit_and_test(common, root / experiment, test)
        record: dict[str, Any] = {names[k]: describe(v) for k, v in setting.items()}
        if seed is not None:
            record["seed"] = seed
        record.update(status=status, error=error, seconds=round(time.perf_counter() - started, 1))
        records.append(_record(root, experiment, record))
        if status != "ok":
            print(f"lab sweep: {told} {status}: {error}", file=sys.stderr, flush=True)
        _write_tables(sweep_dir, records, settings, rank_by)  # after every run: nothing is lost
    return pd.DataFrame(records)


def fit_and_test(common: list[str], experiment_dir: Path, test: bool) -> tuple[str, str]:
    """One run of a sweep: ``lab fit`` (``--then_test last``: the test in the same process,
    one start-up instead of two); its status (``ok``, ``failed (fit)``, ``failed (test)``:
    which stage failed, as the run's ``run.json`` tells) and the error's last line."""
    code, message = run_lab(["fit", *common, *(["--then_test", "last"] if test else [])])
    if code == 0:
        return "ok", ""
    run = latest_run(experiment_dir)
    fitted = run is not None and read_run_info(run).get("status", {}).get("fit") == "finished"
    return f"failed ({'test' if test and fitted else 'fit'})", message


def best_setting(settings: list[Setting], table: pd.DataFrame, select: str) -> Setting:
    """The setting whose row has the highest ``select`` among those that ran (ok), with
    only the keys that vary across the grid (one-valued keys are how the sweep ran)."""
    if select not in table:
        raise LabError(f"--select {select!r} is not a column of the sweep table: {list(table)}")
    ok = table[(table["status"] == "ok") & table[select].notna()]
    if ok.empty:
        raise LabError(f"no setting finished with a value of {select!r}: nothing to train further")
    best = settings[int(ok[select].astype(float).idxmax())]
    varying = {k for k in swept_keys(settings) if len({describe(s.get(k)) for s in settings}) > 1}
    return {k: v for k, v in best.items() if k in varying}


def run_final(
    configs: list[str],
    settings: list[Setting],
    table: pd.DataFrame,
    name: str,
    root: Path,
    extra: Sequence[str],
    select: str,
    selection: pd.DataFrame | None = None,
    rank_by: str = "test/acc",
) -> pd.DataFrame:
    """Fit and test the best setting once more as ``sweeps/<name>/final``; the table with
    its row appended (``final`` in the ``status``-adjacent ``setting`` column).
    ``selection``: the table to choose from when it is not ``table`` (a seeded sweep's
    per-setting means)."""
    chosen = best_setting(settings, table if selection is None else selection, select)
    print(f"lab sweep: final run of the best by {select}: {chosen}", file=sys.stderr, flush=True)
    base = [arg for config in configs for arg in ("--config", config)] + list(extra)
    experiment = f"sweeps/{name}/final"
    overrides = setting_overrides(base, chosen)
    common = [*base, *overrides, "--experiment", experiment, "--log_root", str(root)]
    started = time.perf_counter()
    status, error = fit_and_test(common, root / experiment, test=True)
    names = setting_names(swept_keys(settings))
    record: dict[str, Any] = {names[k]: describe(v) for k, v in chosen.items()}
    record.update(status=f"final: {status}", error=error)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record = _record(root, experiment, record)
    table = pd.concat([table, pd.DataFrame([record])], ignore_index=True)
    sweep_dir = root / "sweeps" / name
    _write_tables(sweep_dir, table.to_dict("records"), settings, rank_by)
    return table


def seed_table(
    runs: pd.DataFrame, settings: list[Setting], rank_by: str = "test/acc"
) -> pd.DataFrame:
    """The per-setting table of a seeded sweep (see ``seeds.aggregate_seeds``)."""
    keys = list(setting_names(swept_keys(settings)).values())
    metrics = list(dict.fromkeys([rank_by, *SEED_METRICS]))
    return aggregate_seeds(runs, keys, metrics, rank_by)


def _write_tables(
    sweep_dir: Path,
    records: list[dict[str, Any]],
    settings: list[Setting],
    rank_by: str = "test/acc",
) -> None:
    table = pd.DataFrame(records)
    atomic_write_text(sweep_dir / "sweep.csv", table.to_csv(index=False))
    text = _markdown(table) + "\n"
    keys = list(setting_names(swept_keys(settings)).values())
    if "seed" in table:
        seeded_runs = table[~table["status"].astype(str).str.startswith("final")]
        seeded = seed_table(seeded_runs, settings, rank_by)
        atomic_write_text(sweep_dir / "sweep_seeds.csv", seeded.to_csv(index=False))
        metrics = [m for m in (rank_by, *SEED_METRICS) if m in seeded]
        text = (
            f"Mean ± standard deviation over the seeds, ranked by the mean {rank_by}:\n\n"
            + seeds_markdown(seeded, keys, list(dict.fromkeys(metrics)))
            + "\n\nEvery run:\n\n"
            + text
        )
    atomic_write_text(sweep_dir / "sweep.md", text)
    atomic_write_text(
        sweep_dir / "sweep.json",
        json.dumps({"keys": keys, "settings": settings}, indent=2, default=str) + "\n",
    )


def _markdown(table: pd.DataFrame) -> str:
    """A sweep table as Markdown: metrics as every table of runs writes them
    (``lab.runs.metrics``), the swept values as written."""
    return format_table(table).to_markdown(index=False, disable_numparse=True)


def setting_label(setting: Setting, names: dict[str, str]) -> str:
    """A legend entry for a setting, e.g. ``optimizer=SGD(lr=0.01), batch_size=1``."""
    return ", ".join(f"{names[k]}={describe(v)}" for k, v in setting.items()) or "default"


def main(argv: Sequence[str] | None = None) -> None:
    """Run a sweep and print its table."""
    parser = argparse.ArgumentParser(
        prog="lab sweep",
        description="Run an experiment over a grid of settings; one run per setting.",
        epilog="Arguments after -- go to every `lab fit` / `lab test` unchanged.",
    )
    parser.add_argument("--config", action="append", required=True, help="config file(s)")
    parser.add_argument("--grid", action="append", default=[], help="KEY=[V1,V2,...]")
    parser.add_argument("--grid_file", default=None, help="YAML file with a 'grid:' entry")
    parser.add_argument("--name", default=None, help="sweep folder name (default: config name)")
    parser.add_argument("--log_root", default=None, help="default: $LAB_LOGS or lightning_logs")
    parser.add_argument(
        "--metrics",
        default="test/acc,best val/acc",
        help="comma-separated metrics to plot against the swept value",
    )
    parser.add_argument("--no_test", action="store_true", help="fit only")
    parser.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="run each setting N times, with seed_everything 0 .. N-1; the table and plot "
        "show mean ± standard deviation, settings ranked by the mean of the first --metrics",
    )
    parser.add_argument(
        "--final",
        action="store_true",
        help="then fit and test the best setting (by --select) once more, as "
        "sweeps/<name>/final: with the values it was chosen for, and the config's own "
        "values for the keys the grid held at one value (e.g. a shorter schedule)",
    )
    parser.add_argument(
        "--select",
        default="best val/acc",
        help="the column that picks the best setting for --final (higher is better)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = parser.parse_args(argv)

    grids: list[dict[str, list[Any]]] = []
    if args.grid_file:
        grids += load_grid_file(Path(args.grid_file))
    if args.grid:
        combined: dict[str, list[Any]] = {}
        for text in args.grid:
            combined.update(parse_grid_argument(text))
        grids.append(combined)
    if not grids:
        raise LabError("lab sweep needs --grid KEY=[V1,V2,...] or --grid_file FILE")
    settings = expand(grids)
    for config in args.config:
        if not Path(config).is_file():
            raise LabError(f"config file {config} does not exist")
    name = args.name or Path(args.config[0]).stem
    root = log_root(args.log_root)
    if args.seeds < 0:
        raise LabError(f"--seeds must be 0 (the config's own seed) or more, got {args.seeds}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    rank_by = metrics[0] if metrics else "test/acc"
    table = run_sweep(
        args.config,
        settings,
        name,
        root,
        extra,
        test=not args.no_test,
        seeds=args.seeds,
        rank_by=rank_by,
    )
    sweep_dir = root / "sweeps" / name
    keys = list(setting_names(swept_keys(settings)).values())
    seeded = seed_table(table, settings, rank_by) if args.seeds else None
    plot_sweep(table if seeded is None else seeded, keys, metrics, sweep_dir / "sweep.png")
    names = setting_names(swept_keys(settings))
    plan = [(s, seed) for s in settings for seed in (range(args.seeds) if args.seeds else [None])]
    runs = {
        setting_label(setting, names) + ("" if seed is None else f", seed={seed}"): root / run
        for (setting, seed), run in zip(plan, table.get("run", [None] * len(table)), strict=True)
        if isinstance(run, str)
    }
    write_curves(runs, sweep_dir)
    if args.final:
        table = run_final(
            args.config, settings, table, name, root, extra, args.select, seeded, rank_by
        )
    if seeded is not None:
        print(seeds_markdown(seeded, keys, [m for m in metrics if m in seeded]))
        print()
    print(_markdown(table.drop(columns=["error"])))
    failed = int((~table["status"].isin(["ok", "final: ok"])).sum())
    count = f"{len(table)} settings" if seeded is None else f"{len(table)} runs"
    print(f"sweep: {sweep_dir} ({count}, {failed} failed)")
    if failed:  # every setting ran, but the caller (make, a script) must see the failure
        raise SystemExit(1)
