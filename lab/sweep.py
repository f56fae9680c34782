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

A grid file is YAML: ``grid`` maps keys to lists of values (every combination is run),
or is a list of such maps (their settings are run one after the other, e.g. a sweep over
lambda with alpha fixed, then over alpha with lambda fixed)::

    grid:
      - {model.center_weight: [0.01, 0.1, 1]}
      - {model.center_lr: [0.1, 1]}

A value may be a map, e.g. a whole optimizer, and one grid map may set several keys
together (a list of one-value maps is a list of hand-picked settings)::

    grid:
      - {model.init_args.optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01}},
         data.init_args.batch_size: 64}
      - {model.init_args.optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}},
         data.init_args.batch_size: 64}

A list value is always a list of values to sweep: a value that is itself a list (Adam's
``betas``) is written inside one, ``betas: [[0.9, 0.999], [0.5, 0.999]]``.
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


def describe(value: Any) -> Any:
    """A swept value as the table and folder names show it: scalars as they are, a class
    map as ``SGD(lr=0.01, momentum=0.9)``, other maps and lists as short text."""
    if isinstance(value, dict):
        if "class_path" in value:
            name = str(value["class_path"]).rsplit(".", 1)[-1]
            arguments = value.get("init_args") or {}
            inner = ", ".join(f"{k}={describe(v)}" for k, v in arguments.items())
            return f"{name}({inner})"
        return "{" + ", ".join(f"{k}={describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(describe(v)) for v in value) + "]"
    return value


def slug(setting: Setting) -> str:
    """A folder name for a setting, e.g. ``margin-0.2``, ``center_weight-0.1_center_lr-1``
    or ``optimizer-SGD_lr=0.01_batch_size-1``."""
    names = setting_names(list(setting))
    parts = [f"{names[k]}-{describe(v)}" for k, v in setting.items()]
    text = re.sub(r"[^A-Za-z0-9._=-]+", "_", "_".join(parts))
    text = re.sub(r"_{2,}", "_", text).replace("-_", "-")
    return text.strip("_") or "default"


def _override(key: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"--{key}={text}"


def _overrides(base: list[str], setting: Setting) -> list[str]:
    """The command-line arguments of a setting. A key may index a list, e.g.
    ``model.init_args.losses.1.init_args.weight`` (the second loss term's weight): the
    command line cannot, so the list is read from the resolved config of ``base`` and
    passed whole, with every indexed value of the setting set in it."""
    plain = {k: v for k, v in setting.items() if not any(p.isdigit() for p in k.split("."))}
    indexed = {k: v for k, v in setting.items() if k not in plain}
    args = [_override(k, v) for k, v in plain.items()]
    if not indexed:
        return args
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code, message = _lab(["fit", *base, *args, "--print_config"])
    if code != 0:
        raise LabError(f"sweep: cannot resolve {', '.join(indexed)}: {message}")
    config = yaml.safe_load(printed.getvalue())
    lists: dict[str, list] = {}
    for key, value in indexed.items():
        parts = key.split(".")
        at = next(i for i, p in enumerate(parts) if p.isdigit())
        list_key = ".".join(parts[:at])
        node: Any = config
        for part in parts[:at]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, list) or int(parts[at]) >= len(node):
            raise LabError(f"sweep key {key}: {list_key} has no item {parts[at]} in the config")
        items = lists.setdefault(list_key, node)
        target = items[int(parts[at])]
        for part in parts[at + 1 : -1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        target[parts[-1]] = value
    return args + [_override(k, v) for k, v in lists.items()]


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
        overrides = _overrides(base, setting)
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
        overrides = _overrides(base, setting)
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
        record: dict[str, Any] = {names[k]: describe(v) for k, v in setting.items()}
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


def best_setting(settings: list[Setting], table: pd.DataFrame, select: str) -> Setting:
    """The setting whose row has the highest ``select`` among those that ran (ok), with
    only the keys that vary across the grid (one-valued keys are how the sweep ran)."""
    if select not in table:
        raise LabError(f"--select {select!r} is not a column of the sweep table: {list(table)}")
    ok = table[(table["status"] == "ok") & table[select].notna()]
    if ok.empty:
        raise LabError(f"no setting finished with a value of {select!r}: nothing to train further")
    best = settings[int(ok[select].astype(float).idxmax())]
    varying = {k for k in _keys(settings) if len({describe(s.get(k)) for s in settings}) > 1}
    return {k: v for k, v in best.items() if k in varying}


def run_final(
    configs: list[str],
    settings: list[Setting],
    table: pd.DataFrame,
    name: str,
    root: Path,
    extra: Sequence[str],
    select: str,
) -> pd.DataFrame:
    """Fit and test the best setting once more as ``sweeps/<name>/final``; the table with
    its row appended (``final`` in the ``status``-adjacent ``setting`` column)."""
    chosen = best_setting(settings, table, select)
    print(f"lab sweep: final run of the best by {select}: {chosen}", file=sys.stderr, flush=True)
    base = [arg for config in configs for arg in ("--config", config)] + list(extra)
    experiment = f"sweeps/{name}/final"
    overrides = _overrides(base, chosen)
    common = [*base, *overrides, "--experiment", experiment, "--log_root", str(root)]
    started = time.perf_counter()
    status, error = "ok", ""
    code, message = _lab(["fit", *common])
    if code != 0:
        status, error = "failed (fit)", message
    else:
        code, message = _lab(["test", *common, "--ckpt_path", "last"])
        if code != 0:
            status, error = "failed (test)", message
    names = setting_names(_keys(settings))
    record: dict[str, Any] = {names[k]: describe(v) for k, v in chosen.items()}
    record.update(status=f"final: {status}", error=error)
    record["seconds"] = round(time.perf_counter() - started, 1)
    run = latest_run(root / experiment)
    if run is not None and (run / "metrics.csv").is_file():
        record.update(summarize(run), run=str(run.relative_to(root)))
    table = pd.concat([table, pd.DataFrame([record])], ignore_index=True)
    sweep_dir = root / "sweeps" / name
    atomic_write_text(sweep_dir / "sweep.csv", table.to_csv(index=False))
    atomic_write_text(sweep_dir / "sweep.md", table.to_markdown(index=False, floatfmt=".4f") + "\n")
    return table


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


# Curves of every setting on one figure: metrics over optimizer steps, then per epoch.
STEP_CURVES = ("train_step/loss", "train_step/acc", "grad_norm/total")
EPOCH_CURVES = ("val/acc",)


def curve_table(runs: dict[str, Path]) -> pd.DataFrame:
    """The long table behind ``sweep_curves``: ``setting, step, metric, value, epoch``, one
    row per logged value of ``STEP_CURVES`` and ``EPOCH_CURVES`` in each setting's run
    folder (``{label: run folder}``); a value logged twice for the same step (a resumed
    run) keeps the later one, ``val/acc`` keeps the last of each epoch. Runs without a
    readable ``metrics.csv`` are left out."""
    from lab.report import Run, read_metrics

    columns = ["setting", "step", "metric", "value", "epoch"]
    frames = []
    for label, run_dir in runs.items():
        run = Run(path=Path(run_dir), id=label)
        read_metrics(run)  # a truncated last row is left out
        if run.metrics is None:
            continue
        metrics = run.metrics
        for metric in (*STEP_CURVES, *EPOCH_CURVES):
            if metric not in metrics or metrics[metric].isna().all():
                continue
            rows = metrics.dropna(subset=[metric])
            frame = pd.DataFrame(
                {
                    "setting": label,
                    "step": rows["step"] if "step" in rows else float("nan"),
                    "metric": metric,
                    "value": rows[metric].astype(float),
                    "epoch": rows["epoch"] if "epoch" in rows else float("nan"),
                }
            )
            by = "epoch" if metric in EPOCH_CURVES else "step"
            frame = frame.dropna(subset=[by]).drop_duplicates(subset=[by], keep="last")
            frames.append(frame.sort_values(by))
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)[columns]
    for column in ("step", "epoch"):
        table[column] = table[column].astype("Int64")
    return table


def plot_curves(table: pd.DataFrame, path: Path, smooth_points: int = 50) -> bool:
    """One figure, a panel per metric of ``curve_table``'s table (step metrics against the
    optimizer step, ``val/acc`` against the epoch), one line per setting; False if the
    table is empty. Step curves are drawn as moving averages of about
    ``1 / smooth_points`` of their length (batch accuracy at batch size 1 is 0 or 1); the
    step axis turns logarithmic beyond step 10 (symlog) when the settings' step counts
    differ more than 20-fold (batch size 1 against 64), so every setting stays visible."""
    metrics = [m for m in (*STEP_CURVES, *EPOCH_CURVES) if m in set(table["metric"])]
    if table.empty or not metrics:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from lab.callbacks.figures import save_figure_atomically
    from lab.report import _log_scale_if_wide

    settings = list(dict.fromkeys(table["setting"]))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(settings)}
    columns = min(len(settings), 3)
    legend_rows = -(-len(settings) // columns)
    height = 4.0 + 0.25 * legend_rows  # inches: the panels, then the legend below them
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(5 * len(metrics), height), squeeze=False, dpi=100
    )
    for axis, metric in zip(axes[0], metrics, strict=True):
        rows = table[table["metric"] == metric]
        per_epoch = metric in EPOCH_CURVES
        x_column = "epoch" if per_epoch else "step"
        windows = []
        for setting in settings:
            series = rows[rows["setting"] == setting]
            if series.empty:
                continue
            x = series[x_column].astype(float).to_numpy()
            y = series["value"]
            window = 1 if per_epoch else max(1, len(series) // smooth_points)
            windows.append(window)
            y = y.rolling(window, min_periods=1).mean() if window > 1 else y
            marker = "o" if per_epoch else None
            axis.plot(
                x,
                y.to_numpy(),
                marker=marker,
                markersize=3,
                linewidth=1.2,
                color=colours[setting],
                label=setting,
            )
        if per_epoch:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlabel("epoch")
        else:
            last_steps = rows.groupby("setting")["step"].max().astype(float)
            if len(last_steps) > 1 and last_steps.max() > 20 * max(last_steps.min(), 1.0):
                axis.set_xscale("symlog", linthresh=10)
            axis.set_xlabel("optimizer step")
        if metric.endswith("loss") or metric.startswith("grad_norm"):
            _log_scale_if_wide(axis)
        smoothed = max(windows, default=1) > 1
        axis.set_title(metric + (" (moving average)" if smoothed else ""))
        axis.grid(alpha=0.3)
    # One legend for all panels, below them: in a panel it would hide some curves.
    entries: dict[str, Any] = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    figure.legend(entries.values(), entries.keys(), loc="lower center", ncol=columns, fontsize=8)
    figure.tight_layout(rect=(0, (0.1 + 0.25 * legend_rows) / height, 1, 1))
    try:
        save_figure_atomically(figure, path)
    finally:
        plt.close(figure)
    return True


def write_curves(runs: dict[str, Path], sweep_dir: Path) -> bool:
    """``sweep_curves.csv`` and ``sweep_curves.png`` in ``sweep_dir`` from the settings'
    run folders (``{label: run folder}``); False (nothing written) if none logged any of
    the curves."""
    table = curve_table(runs)
    if table.empty:
        return False
    atomic_write_text(sweep_dir / "sweep_curves.csv", table.to_csv(index=False))
    return plot_curves(table, sweep_dir / "sweep_curves.png")


def setting_label(setting: Setting, names: dict[str, str]) -> str:
    """A legend entry for a setting, e.g. ``optimizer=SGD(lr=0.01), batch_size=1``."""
    return ", ".join(f"{names[k]}={describe(v)}" for k, v in setting.items()) or "default"


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
    table = run_sweep(args.config, settings, name, root, extra, test=not args.no_test)
    sweep_dir = root / "sweeps" / name
    keys = list(setting_names(_keys(settings)).values())
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    plot_sweep(table, keys, metrics, sweep_dir / "sweep.png")
    names = setting_names(_keys(settings))
    runs = {
        setting_label(setting, names): root / run
        for setting, run in zip(settings, table.get("run", [None] * len(table)), strict=True)
        if isinstance(run, str)
    }
    write_curves(runs, sweep_dir)
    if args.final:
        table = run_final(args.config, settings, table, name, root, extra, args.select)
    print(table.drop(columns=["error"]).to_markdown(index=False, floatfmt=".4f"))
    failed = int((~table["status"].isin(["ok", "final: ok"])).sum())
    print(f"sweep: {sweep_dir} ({len(table)} settings, {failed} failed)")
    if failed:  # every setting ran, but the caller (make, a script) must see the failure
        raise SystemExit(1)
