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
status, the headline metrics) and ``sweep.png`` (the first swept key against the chosen
metrics, one line per combination of the other keys).

A grid file is YAML: ``grid`` maps keys to lists of values (every combination is run),
or is a list of such maps (their settings are run one after the other, e.g. a sweep over
lambda with alpha fixed, then over alpha with lambda fixed)::

    grid:
      - {model.center_weight: [0.01, 0.1, 1]}
      - {model.center_lr: [0.1, 1]}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lab.errors import LabError
from lab.report import setting_names
from lab.runs import atomic_write_text, latest_run, log_root, summarize

Setting = dict[str, Any]


def parse_grid_argument(text: str) -> dict[str, list[Any]]:
    """``'model.margin=[0.1,0.2]'`` -> ``{"model.margin": [0.1, 0.2]}`` (YAML values; a
    single value is a one-value list)."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not raw.strip():
        raise LabError(
            f"--grid expects KEY=[V1,V2,...], e.g. 'model.margin=[0.1,0.2]', got {text!r}"
        )
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise LabError(f"--grid {key}: {raw!r} is not a YAML value or list ({error})") from None
    values = values if isinstance(values, list) else [values]
    if not values:
        raise LabError(f"--grid {key}: the list of values is empty")
    return {key: values}


def load_grid_file(path: Path) -> list[dict[str, list[Any]]]:
    """The grids of a YAML grid file (see the module docstring)."""
    if not path.is_file():
        raise LabError(f"grid file {path} does not exist")
    loaded = yaml.safe_load(path.read_text()) or {}
    grids = loaded.get("grid") if isinstance(loaded, dict) else None
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) and g for g in grids):
        raise LabError(f"{path}: expected 'grid:' holding a map of KEY: [values] or a list of maps")
    return [{str(k): v if isinstance(v, list) else [v] for k, v in g.items()} for g in grids]


def expand(grids: Sequence[dict[str, list[Any]]]) -> list[Setting]:
    """Every setting of the grids: the product of each grid's lists, grids one after another,
    duplicates dropped (first kept)."""
    settings: list[Setting] = []
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            setting = dict(zip(keys, values, strict=True))
            if setting not in settings:
                settings.append(setting)
    return settings


def _keys(settings: Sequence[Setting]) -> list[str]:
    return list(dict.fromkeys(k for s in settings for k in s))


def slug(setting: Setting) -> str:
    """A folder name for a setting, e.g. ``margin-0.2`` or ``center_weight-0.1_center_lr-1``."""
    names = setting_names(list(setting))
    parts = [f"{names[k]}-{v}" for k, v in setting.items()]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "_".join(parts)) or "default"


def _override(key: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"--{key}={text}"


def _lab(args: list[str]) -> tuple[int, str]:
    """Run ``lab`` in-process; its exit code and the last line it wrote to stderr."""
    from lab.cli import main

    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr):
        try:
            main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return code, re.sub(r"^(lab: )?error: ", "", last)


def check_settings(base: list[str], settings: list[Setting]) -> None:
    """Parse every setting's full config (nothing is built or run); raise on the first
    one the parser refuses."""
    for setting in settings:
        overrides = [_override(k, v) for k, v in setting.items()]
        with contextlib.redirect_stdout(io.StringIO()):
            code, message = _lab(["fit", *base, *overrides, "--print_config"])
        if code != 0:
            raise LabError(f"sweep setting {setting} is not a valid config: {message}")


def run_sweep(
    configs: list[str],
    settings: list[Setting],
    name: str,
    root: Path,
    extra: Sequence[str] = (),
    test: bool = True,
) -> pd.DataFrame:
    """Fit (and test) every setting as its own run under ``root/sweeps/name``; return the
    table that is also written to ``sweep.csv`` and ``sweep.md``."""
    base = [arg for config in configs for arg in ("--config", config)] + list(extra)
    check_settings(base, settings)
    sweep_dir = root / "sweeps" / name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    names = setting_names(_keys(settings))
    records = []
    for i, setting in enumerate(settings, 1):
        experiment = f"sweeps/{name}/{slug(setting)}"
        overrides = [_override(k, v) for k, v in setting.items()]
        common = [*base, *overrides, "--experiment", experiment, "--log_root", str(root)]
        print(f"lab sweep: [{i}/{len(settings)}] {setting}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        status, error = "ok", ""
        code, message = _lab(["fit", *common])
        if code != 0:
            status, error = "failed (fit)", message
        elif test:
            code, message = _lab(["test", *common, "--ckpt_path", "last"])
            if code != 0:
                status, error = "failed (test)", message
        record: dict[str, Any] = {names[k]: v for k, v in setting.items()}
        record.update(status=status, error=error, seconds=round(time.perf_counter() - started, 1))
        run = latest_run(root / experiment)
        if run is not None and (run / "metrics.csv").is_file():
            summary = summarize(run)
            summary["run"] = str(run.relative_to(root))
            record.update(summary)
        records.append(record)
        if status != "ok":
            print(f"lab sweep: {setting} {status}: {error}", file=sys.stderr, flush=True)
        _write_tables(sweep_dir, records, settings)  # after every setting: nothing is lost
    return pd.DataFrame(records)


def _write_tables(sweep_dir: Path, records: list[dict[str, Any]], settings: list[Setting]) -> None:
    table = pd.DataFrame(records)
    atomic_write_text(sweep_dir / "sweep.csv", table.to_csv(index=False))
    atomic_write_text(sweep_dir / "sweep.md", table.to_markdown(index=False, floatfmt=".4f") + "\n")
    keys = list(setting_names(_keys(settings)).values())
    atomic_write_text(
        sweep_dir / "sweep.json",
        json.dumps({"keys": keys, "settings": settings}, indent=2, default=str) + "\n",
    )


def plot_sweep(table: pd.DataFrame, keys: list[str], metrics: list[str], path: Path) -> bool:
    """The first swept key against each metric (one panel each), one line per combination
    of the other keys; False if there is nothing to plot."""
    metrics = [m for m in metrics if m in table and table[m].notna().any()]
    if table.empty or not metrics or keys[0] not in table:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    from lab.callbacks.figures import save_figure_atomically

    x_key, others = keys[0], [k for k in keys[1:] if k in table]
    numeric = pd.api.types.is_numeric_dtype(table[x_key])
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    groups = table.groupby(others, dropna=False) if others else [((), table)]
    for axis, metric in zip(axes[0], metrics, strict=True):
        for group_values, rows in groups:
            rows = rows.dropna(subset=[metric])
            if rows.empty:
                continue
            if numeric:
                rows = rows.sort_values(x_key)
                x = rows[x_key].astype(float)
            else:
                x = rows[x_key].astype(str)
            values = group_values if isinstance(group_values, tuple) else (group_values,)
            label = ", ".join(f"{k}={v}" for k, v in zip(others, values, strict=False)) or None
            axis.plot(x, rows[metric], marker="o", label=label)
        if numeric and _log_spaced(table[x_key]):
            axis.set_xscale("log")
        axis.set_xlabel(x_key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if others:
            axis.legend(fontsize=8)
    figure.suptitle(f"sweep over {', '.join(keys)}")
    figure.tight_layout()
    try:
        save_figure_atomically(figure, path)
    finally:
        plt.close(figure)
    return True


def _log_spaced(values: pd.Series) -> bool:
    positive = values.dropna().astype(float)
    positive = positive[positive > 0]
    return len(positive) >= 3 and positive.max() / positive.min() >= 100


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
    table = run_sweep(args.config, settings, name, root, extra, test=not args.no_test)
    sweep_dir = root / "sweeps" / name
    keys = list(setting_names(_keys(settings)).values())
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    plot_sweep(table, keys, metrics, sweep_dir / "sweep.png")
    print(table.drop(columns=["error"]).to_markdown(index=False, floatfmt=".4f"))
    failed = int((table["status"] != "ok").sum())
    print(f"sweep: {sweep_dir} ({len(table)} settings, {failed} failed)")
    if failed:  # every setting ran, but the caller (make, a script) must see the failure
        raise SystemExit(1)
