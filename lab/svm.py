"""``lab svm``: scikit-learn SVMs on CNN features, one row per layer x kernel x scaler.

::

    lab svm --config experiments/stl10-svm.yaml
    lab svm --config experiments/stl10-svm.yaml --kernels='[rbf]' --grid '{C: [0.1, 1, 10]}'

A backbone (``backbone``: class path and arguments, e.g. an ImageNet ResNet-50) turns the
images of a data module (``data``) into features: the penultimate vector and/or the
classifier's output (``layers``). They are extracted once per split with the data
module's evaluation transform and cached (``lab.features``), so every kernel, scaler and
later run reuses them. Each setting is a ``Pipeline([scale, SVC])`` fitted on the
training split only (train minus the held-out val, unaugmented); it is then only asked
for decision values on val and test. The best setting is the one with the best val
accuracy, never chosen by test.

Everything goes to ``<log root>/<experiment>/version_N/``: ``config.yaml`` (resolved),
``svm.csv`` and ``svm.md`` (one row per setting; the best by val marked in the
Markdown), ``svm.png`` (test accuracy of every setting) and, per setting, a folder
``<layer>-<kernel>-<scaler>[-<param>=<v>...]`` with the confusion matrix, per-class
accuracy and one-vs-rest ROC/AUC of the test split (from the SVM's decision values).
"""

from __future__ import annotations

import importlib
import itertools
import math
import re
import sys
import time
from argparse import ArgumentError
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.data import DataLoader, Subset

from lab.callbacks.evaluation import write_evaluation
from lab.data.base import LabDataModule, data_root, dataset_targets
from lab.errors import LabError
from lab.features import LAYERS, cached_features, extract_layers
from lab.runs import atomic_write_text, log_root, versions

KERNELS = ("rbf", "linear", "poly", "sigmoid")
SCALERS = ("none", "standard", "minmax")
SPLITS = ("train", "val", "test")
# Set by the command itself: the kernel by ``kernels``, the seed by ``seed``, and ovr
# decision values are what the ROC curves are drawn from.
_FIXED_SVC = ("kernel", "decision_function_shape", "random_state")
# Data settings that change how the images are loaded, not what the features are.
_LOADER_ONLY = {
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "pin_memory",
    "download",
    "verify",
    "crop_padding",
    "hflip",
    "rotation",
    "pk_classes",
    "pk_samples",
    "shuffle",
    "device_data",
}
Features = tuple[np.ndarray, np.ndarray]


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One SVM to fit: the feature layer, the kernel, the scaler and extra SVC parameters."""

    layer: str
    kernel: str
    scaler: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Its folder name, e.g. ``penultimate-rbf-standard-C=10``."""
        parts = [self.layer, self.kernel, self.scaler]
        parts += [f"{key}={value}" for key, value in self.params.items()]
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(parts))


def _choices(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(str(v) for v in values))
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        got = ", ".join(unknown) if unknown else "an empty list"
        raise LabError(f"{name}: unknown {got}; expected some of {', '.join(allowed)}")
    return values


def check_svc_params(svm: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> None:
    """Raise a LabError for a parameter SVC does not take (or the command sets itself), an
    empty grid list, or a value SVC refuses (tried on a four-point problem)."""
    known = set(SVC().get_params())
    for source, keys in (("svm", list(svm)), ("grid", list(grid))):
        for key in keys:
            if key in _FIXED_SVC:
                raise LabError(
                    f"{source}.{key} is set by lab svm (kernels, seed); leave it out of {source}"
                )
            if key not in known:
                raise LabError(
                    f"{source}.{key} is not an SVC parameter; expected some of "
                    f"{', '.join(sorted(known - set(_FIXED_SVC)))}"
                )
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise LabError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    x, y = np.array([[0.0], [1.0], [0.1], [0.9]]), np.array([0, 1, 0, 1])
    for params in expand_grid(grid):
        merged = {**svm, **params}
        try:
            SVC(**merged).fit(x, y)
        except (TypeError, ValueError) as error:
            raise LabError(f"SVC({merged}) is refused: {error}") from None


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (``[{}]`` for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def expand_settings(
    layers: Sequence[str],
    kernels: Sequence[str],
    scalers: Sequence[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> list[Setting]:
    """Every layer x kernel x scaler x grid combination, in that nesting order."""
    return [
        Setting(layer, kernel, scaler, params)
        for layer in layers
        for kernel in kernels
        for scaler in scalers
        for params in expand_grid(grid or {})
    ]


# -- fitting and evaluating ----------------------------------------------------------------


def make_pipeline(kernel: str, scaler: str, seed: int = 0, **svc_params: Any) -> Pipeline:
    """An unfitted ``Pipeline([("scale", ...), ("svm", SVC(...))])``; the scaler is
    ``passthrough`` for ``none``, so fitting the pipeline fits it on the training rows only."""
    scalers = {"none": "passthrough", "standard": StandardScaler(), "minmax": MinMaxScaler()}
    if scaler not in scalers:
        raise LabError(f"unknown scaler {scaler!r}; expected one of {', '.join(SCALERS)}")
    svm = SVC(kernel=kernel, decision_function_shape="ovr", random_state=seed, **svc_params)
    return Pipeline([("scale", scalers[scaler]), ("svm", svm)])


@dataclass
class Evaluation:
    """What a fitted pipeline does on one split."""

    scores: np.ndarray  # (N, C) one-vs-rest decision values, columns = classes 0..C-1
    predictions: np.ndarray  # (N,) the arg-max class of the scores
    accuracy: float
    macro_f1: float
    seconds: float  # decision_function time


def evaluate(pipeline: Pipeline, x: np.ndarray, y: np.ndarray, num_classes: int) -> Evaluation:
    """Score an already fitted pipeline on ``(x, y)``; it is only asked for decision values.

    The prediction is the arg-max of the one-vs-rest decision values (what
    ``SVC(break_ties=True).predict`` returns), so accuracy, confusion matrix and ROC all
    come from the same numbers.
    """
    check_is_fitted(pipeline)
    classes = np.asarray(pipeline.classes_)
    if not np.array_equal(classes, np.arange(num_classes)):
        raise LabError(
            f"the SVM was fitted on classes {classes.tolist()}, expected all of "
            f"0..{num_classes - 1}"
        )
    started = time.perf_counter()
    decision = np.asarray(pipeline.decision_function(x), dtype=np.float64)
    seconds = time.perf_counter() - started
    # Two classes: one value, positive for classes[1]; two columns keep one API.
    scores = decision if decision.ndim == 2 else np.stack([-decision, decision], axis=1)
    predictions = classes[scores.argmax(axis=1)]
    return Evaluation(
        scores=scores,
        predictions=predictions,
        accuracy=float(accuracy_score(y, predictions)),
        macro_f1=float(f1_score(y, predictions, labels=classes, average="macro", zero_division=0)),
        seconds=seconds,
    )


def run_svm(
    features: Mapping[str, Mapping[str, Features]],
    class_names: Sequence[str],
    settings: Sequence[Setting],
    out_dir: Path,
    *,
    svm: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit and evaluate every setting; write the per-setting folders and the tables.

    Args:
        features: ``features[layer][split] = (x (N, D), y (N,))`` for the splits
            ``train``, ``val`` and ``test``.
        class_names: one name per class (labels are 0..C-1).
        settings: what to fit (:func:`expand_settings`).
        out_dir: the run folder (``svm.csv``, ``svm.md``, ``svm.png`` and a folder per
            setting go there).
        svm: SVC parameters for every setting (a setting's ``params`` override them).
        seed: the SVC's ``random_state``.

    Returns:
        The table of ``svm.csv``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(class_names)
    for layer in {s.layer for s in settings}:
        missing = [split for split in SPLITS if split not in features.get(layer, {})]
        if missing:
            raise LabError(f"no {', '.join(missing)} features of layer {layer}")
        present = np.unique(features[layer]["train"][1])
        if not np.array_equal(present, np.arange(num_classes)):
            raise LabError(
                f"the training split holds classes {present.tolist()}, expected every one of "
                f"0..{num_classes - 1} (is max_train smaller than the number of classes?)"
            )
    rows = []
    for i, setting in enumerate(settings, 1):
        x_train, y_train = features[setting.layer]["train"]
        x_val, y_val = features[setting.layer]["val"]
        x_test, y_test = features[setting.layer]["test"]
        pipeline = make_pipeline(
            setting.kernel, setting.scaler, seed, **{**(svm or {}), **setting.params}
        )
        started = time.perf_counter()
        pipeline.fit(x_train, y_train)
        fit_seconds = time.perf_counter() - started
        val = evaluate(pipeline, x_val, y_val, num_classes)
        test = evaluate(pipeline, x_test, y_test, num_classes)
        auc = write_evaluation(
            out_dir / setting.name, test.scores, y_test, list(class_names), softmax=False
        )
        row: dict[str, Any] = {
            "layer": setting.layer,
            "kernel": setting.kernel,
            "scaler": setting.scaler,
            **setting.params,
            "n_train": len(y_train),
            "val_acc": val.accuracy,
            "test_acc": test.accuracy,
            "test_macro_f1": test.macro_f1,
            "test_auc_macro": float(auc["auc"].iloc[-1]) if auc is not None else math.nan,
            "fit_seconds": fit_seconds,
            "predict_seconds": val.seconds + test.seconds,
        }
        rows.append(row)
        print(
            f"lab svm: [{i}/{len(settings)}] {setting.name}: val {val.accuracy:.4f}, "
            f"test {test.accuracy:.4f} (fit {fit_seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        write_tables(pd.DataFrame(rows), out_dir)  # after every setting: nothing is lost
    table = pd.DataFrame(rows)
    plot_svm(table, out_dir / "svm.png", chance=1.0 / num_classes)
    return table


# -- tables and figure ---------------------------------------------------------------------


def best_row(table: pd.DataFrame) -> int:
    """Index of the setting with the best val accuracy (the first of equals)."""
    return int(table["val_acc"].to_numpy().argmax())


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, metrics to 4 decimals, the best setting by val marked."""
    shown = table.astype(object).copy()
    for column in table.columns:
        if column.endswith("seconds"):
            shown[column] = [f"{v:.2f}" for v in table[column]]
        elif column.endswith(("_acc", "_f1", "_macro")):
            shown[column] = [f"{v:.4f}" for v in table[column]]
    best = ["" for _ in range(len(table))]
    if len(table):
        best[best_row(table)] = "best (val)"
    shown.insert(0, "best", best)
    return shown.to_markdown(index=False, disable_numparse=True)


def write_tables(table: pd.DataFrame, out_dir: Path) -> None:
    """``svm.csv`` and ``svm.md`` of the table."""
    atomic_write_text(out_dir / "svm.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out_dir / "svm.md", to_markdown(table) + "\n")


def plot_svm(table: pd.DataFrame, path: Path, chance: float | None = None) -> None:
    """Grouped bars of test accuracy: a panel per layer, a group per scaler (and grid
    values), a bar per kernel; the best setting by val outlined, chance dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    from lab.callbacks.figures import save_figure_atomically

    fixed = {"layer", "kernel", "scaler"}
    params = [c for c in table.columns if c not in fixed and c != "n_train"]
    params = params[: params.index("val_acc")] if "val_acc" in params else []
    layers = list(dict.fromkeys(table["layer"]))
    kernels = list(dict.fromkeys(table["kernel"]))
    best = best_row(table)

    def group_of(row: pd.Series) -> str:
        return "\n".join([str(row["scaler"]), *(f"{p}={row[p]}" for p in params)])

    groups = list(dict.fromkeys(group_of(row) for _, row in table.iterrows()))
    width = 0.8 / len(kernels)
    figure, axes = plt.subplots(
        1,
        len(layers),
        figsize=(max(4.0, 0.9 * len(groups) * max(1, len(kernels) / 2) + 1.5) * len(layers), 4),
        squeeze=False,
        dpi=100,
    )
    try:
        from matplotlib.patches import Patch

        colors = plt.get_cmap("tab10")
        for axis, layer in zip(axes[0], layers, strict=True):
            rows = table[table["layer"] == layer]
            for k, kernel in enumerate(kernels):
                for index, row in rows[rows["kernel"] == kernel].iterrows():
                    x = groups.index(group_of(row)) + (k - (len(kernels) - 1) / 2) * width
                    outlined = index == best
                    axis.bar(
                        x,
                        row["test_acc"],
                        width,
                        color=colors(k % 10),
                        edgecolor="black" if outlined else "none",
                        linewidth=2 if outlined else 0,
                    )
            handles = [
                Patch(color=colors(k % 10), label=kernel) for k, kernel in enumerate(kernels)
            ]
            if chance is not None:
                handles.append(
                    axis.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
                )
            axis.set_xticks(range(len(groups)), groups, fontsize=8)
            axis.set_ylim(0, 1.18)
            axis.set_yticks(np.linspace(0, 1, 6))
            axis.set_ylabel("test accuracy")
            axis.set_title(f"{layer} features")
            axis.legend(handles=handles, fontsize=8, loc="upper center", ncol=len(handles))
        row = table.iloc[best]
        chosen = ", ".join(
            [str(row["layer"]), str(row["kernel"]), str(row["scaler"])]
            + [f"{p}={row[p]}" for p in params]
        )
        figure.suptitle(
            f"SVM test accuracy; outlined: the best by val ({chosen}: val "
            f"{row['val_acc']:.3f}, test {row['test_acc']:.3f})",
            fontsize=10,
        )
        figure.tight_layout()
        save_figure_atomically(figure, path)
    finally:
        plt.close(figure)


# -- the command ---------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    """The ``lab svm`` argument parser (a YAML ``--config`` plus ``--key=value``)."""
    parser = ArgumentParser(
        prog="lab svm",
        description="Fit scikit-learn SVMs on CNN features: layers x kernels x scalers.",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file")
    parser.add_subclass_arguments(
        LabDataModule, "data", required=True, help="a lab.data data module"
    )
    parser.add_subclass_arguments(
        nn.Module, "backbone", required=True, help="the feature extractor, e.g. lab.models.ResNet"
    )
    parser.add_argument(
        "--layers", type=list[str], default=["penultimate"], help=f"of {', '.join(LAYERS)}"
    )
    parser.add_argument(
        "--kernels",
        type=list[str],
        default=["rbf", "linear", "poly"],
        help=f"of {', '.join(KERNELS)}",
    )
    parser.add_argument(
        "--scalers",
        type=list[str],
        default=["none", "standard", "minmax"],
        help=f"of {', '.join(SCALERS)}",
    )
    parser.add_argument(
        "--svm", type=dict[str, Any], default={}, help="SVC parameters, e.g. '{C: 1.0}'"
    )
    parser.add_argument(
        "--grid",
        type=dict[str, list[Any]] | None,
        default=None,
        help="SVC parameter lists crossed with the rest, e.g. '{C: [0.1, 1, 10]}'",
    )
    parser.add_argument("--experiment", type=str | None, default=None, help="default: config name")
    parser.add_argument("--log_root", type=str | None, default=None, help="default: $LAB_LOGS")
    parser.add_argument(
        "--cache_dir", type=str | None, default=None, help="default: <data root>/cache/features"
    )
    parser.add_argument("--seed", type=int, default=0, help="backbone init, SVC, max_train")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--max_train",
        type=int | None,
        default=None,
        help="use at most this many training images (stratified, seeded); default: all",
    )
    return parser


def _parse(parser: ArgumentParser, argv: Sequence[str]) -> Namespace:
    from lab.cli import condense_error

    try:
        return parser.parse_args(list(argv))
    except ArgumentError as error:
        raise LabError(condense_error(str(error))) from None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LabError(
            f"device: {name!r} is not a device; expected auto, cpu or cuda[:N]"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LabError(f"device: {name} asked for, but no CUDA GPU is available; use auto or cpu")
    return device


def _build(spec: Namespace, what: str) -> Any:
    """Instantiate a parsed ``class_path`` / ``init_args`` (values already type-checked)."""
    module, _, name = spec.class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    init_args = spec.get("init_args")
    kwargs = init_args.as_dict() if isinstance(init_args, Namespace) else dict(init_args or {})
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # LabErrors pass through as they are
        raise LabError(f"{what} ({spec.class_path}): {error}") from error


def _experiment_name(cfg: Namespace) -> str:
    if cfg.experiment:
        return str(cfg.experiment)
    for path in cfg.get("config") or []:
        stem = Path(str(path)).stem
        if not stem.startswith("_"):
            return stem
    return "svm"


def new_run_dir(experiment_dir: Path) -> Path:
    """A fresh ``version_N`` folder (the next free N) of an experiment."""
    found = versions(experiment_dir)
    number = found[-1][0] + 1 if found else 0
    while True:
        folder = experiment_dir / f"version_{number}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:  # another run took it meanwhile
            number += 1


def source_files(data: LabDataModule) -> list[Path]:
    """The data files features depend on: every file under the data module's
    ``data_dir`` (hidden folders, such as decoded caches, left out); none for a data
    set that ships inside a package."""
    folder = getattr(data, "data_dir", None)
    if folder is None or not Path(folder).is_dir():
        return []
    folder = Path(folder)
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _training_loader(data: LabDataModule, max_train: int | None, seed: int) -> DataLoader:
    """The unaugmented training split, or a stratified, seeded subset of ``max_train``."""
    loader = data.reference_dataloader()
    reference = data.reference_set
    if max_train is None or max_train >= len(reference):
        return loader
    labels = dataset_targets(reference)
    try:
        keep, _ = train_test_split(
            np.arange(len(labels)), train_size=max_train, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise LabError(
            f"max_train={max_train}: cannot take a stratified subset of {len(labels)} images "
            f"of {len(np.unique(labels))} classes ({error})"
        ) from None
    return DataLoader(
        Subset(reference, np.sort(keep).tolist()),
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def _data_key(spec: Namespace) -> dict[str, Any]:
    init_args = spec.get("init_args")
    args = init_args.as_dict() if isinstance(init_args, Namespace) else dict(init_args or {})
    return {
        "class_path": spec.class_path,
        "init_args": {k: v for k, v in args.items() if k not in _LOADER_ONLY},
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Fit SVMs on CNN features over the configured grid and print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = _parse(parser, argv)
    layers = _choices("layers", cfg.layers, LAYERS)
    kernels = _choices("kernels", cfg.kernels, KERNELS)
    scalers = _choices("scalers", cfg.scalers, SCALERS)
    svm_params = dict(cfg.svm or {})
    grid = {str(k): v for k, v in (cfg.grid or {}).items()}
    check_svc_params(svm_params, grid)
    if cfg.max_train is not None and cfg.max_train < 2:
        raise LabError(f"max_train: expected at least 2 (or null for all), got {cfg.max_train}")
    device = _device(cfg.device)

    from lab.cli import resolve_normalization

    # normalization: auto -> imagenet for a backbone with torchvision weights, as in `lab fit`
    resolve_normalization({"data": cfg.data, "model": {"init_args": {"backbone": cfg.backbone}}})
    data = _build(cfg.data, "data")
    if not isinstance(data, LabDataModule):
        raise LabError(f"data: expected a lab.data data module, got {cfg.data.class_path}")
    data.setup("fit")
    data.setup("test")
    class_names = [str(n) for n in data.class_names]
    cache_dir = Path(cfg.cache_dir or data_root(getattr(data, "root", None)) / "cache" / "features")
    files = source_files(data)
    weights = (cfg.backbone.get("init_args") or Namespace()).get("weights")
    if isinstance(weights, str) and Path(weights).is_file():  # a fine-tuned checkpoint
        files.append(Path(weights))

    cfg.experiment = _experiment_name(cfg)
    cfg.log_root = str(log_root(cfg.log_root))
    cfg.cache_dir = str(cache_dir)
    run_dir = new_run_dir(Path(cfg.log_root) / cfg.experiment)
    atomic_write_text(run_dir / "config.yaml", parser.dump(cfg, skip_none=False))

    loaders = {
        "train": lambda: _training_loader(data, cfg.max_train, cfg.seed),
        "val": data.val_dataloader,
        "test": data.test_dataloader,
    }
    built: dict[str, nn.Module] = {}
    passes: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}

    def backbone() -> nn.Module:  # built only when some features are not cached yet
        if "model" not in built:
            torch.manual_seed(cfg.seed)  # random weights (weights: null) are then repeatable
            built["model"] = _build(cfg.backbone, "backbone")
        return built["model"]

    def compute(split: str, layer: str):
        def run() -> Features:
            if split not in passes:  # one pass gives every layer of a split
                print(
                    f"lab svm: extracting {'+'.join(layers)} features of {split} on {device}",
                    file=sys.stderr,
                    flush=True,
                )
                passes[split] = extract_layers(backbone(), loaders[split](), layers, device)
            values, labels = passes[split]
            return values[layer], labels

        return run

    common = {
        "backbone": cfg.backbone.as_dict(),
        "data": _data_key(cfg.data),
        "seed": cfg.seed,
    }
    features: dict[str, dict[str, Features]] = {layer: {} for layer in layers}
    for split in SPLITS:
        for layer in layers:
            key = {
                **common,
                "layer": layer,
                "split": split,
                "max_train": cfg.max_train if split == "train" else None,
            }
            features[layer][split] = cached_features(key, files, cache_dir, compute(split, layer))
        passes.pop(split, None)

    settings = expand_settings(layers, kernels, scalers, grid)
    table = run_svm(features, class_names, settings, run_dir, svm=svm_params, seed=cfg.seed)
    print(to_markdown(table))
    row = table.iloc[best_row(table)]
    print(
        f"best by val: {settings[best_row(table)].name} (val {row['val_acc']:.4f}, "
        f"test {row['test_acc']:.4f})"
    )
    print(f"svm: {run_dir}")
