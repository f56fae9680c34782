"""``lab svm``: scikit-learn SVMs on CNN features, one row per layer x kernel x scaler.

::

    lab svm --config experiments/stl10-svm.yaml
    lab svm --config experiments/stl10-svm.yaml --kernels='[rbf]' --grid '{C: [0.1, 1, 10]}'

A backbone (``backbone``: class path and arguments, e.g. an ImageNet ResNet-50) turns
the images of a data module (``data``) into features: the penultimate vector, the
classifier's output and/or the raw pixels as the backbone sees them (``layers``). They
are extracted once per split with the data module's evaluation transform and cached
(``lab.commands.svm.features``), so every kernel, scaler and later run reuses them. Each
setting is a ``Pipeline([scale, SVC])`` fitted on the training split only (train minus
the held-out val, unaugmented); it is then only asked for decision values on val and test. The best
setting is the one with the best val accuracy, never chosen by test.

Everything goes to ``<log root>/<experiment>/version_N/``: ``config.yaml`` (resolved),
``svm.csv`` and ``svm.md`` (one row per setting; the best by val marked in the
Markdown), ``svm.png`` (test accuracy of every setting) and, per setting, a folder
``<layer>-<kernel>-<scaler>[-<param>=<v>...]`` with the confusion matrix, per-class
accuracy and one-vs-rest ROC/AUC of the test split (from the SVM's decision values),
``predictions.csv`` (its per-image test predictions, see :mod:`lab.runs.predictions`; ``lab
compare`` takes such a folder) and ``intervals.csv``. The tables show test accuracy
(Wilson) and macro F1 (bootstrap) with their 95% interval.
"""

from __future__ import annotations

import importlib
import sys
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Subset

from lab.cli.configs import experiment_name
from lab.cli.lightning_cli import condense_error, resolve_latest_weights, resolve_normalization
from lab.commands.svm.features import LAYERS, cached_features, extract_layers
from lab.commands.svm.fit import (
    KERNELS,
    SCALERS,
    SPLITS,
    Evaluation,
    Features,
    Setting,
    check_svc_params,
    checked_choices,
    evaluate,
    expand_grid,
    expand_settings,
    make_pipeline,
    run_svm,
    write_setting_predictions,
)
from lab.commands.svm.tables import best_row, plot_svm, to_markdown, write_tables
from lab.data.base import LabDataModule, dataset_targets
from lab.data.cache import cache_root
from lab.errors import LabError
from lab.io import atomic_write_text
from lab.runs.layout import claim_run_dir, log_root

__all__ = [
    "KERNELS",
    "SCALERS",
    "SPLITS",
    "Evaluation",
    "Features",
    "Setting",
    "best_row",
    "check_svc_params",
    "evaluate",
    "expand_grid",
    "expand_settings",
    "main",
    "make_pipeline",
    "plot_svm",
    "run_svm",
    "to_markdown",
    "write_setting_predictions",
    "write_tables",
]

# Data settings that change how the images are loaded, not what the features are: left
# out of the feature cache's key.
LOADER_ONLY = {
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
        "--cache_dir",
        type=str | None,
        default=None,
        help="default: $XDG_CACHE_HOME/lab/features (or ~/.cache/lab/features)",
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
    return experiment_name(cfg.get("config") or [], "svm")


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
        "init_args": {k: v for k, v in args.items() if k not in LOADER_ONLY},
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Fit SVMs on CNN features over the configured grid and print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = _parse(parser, argv)
    layers = checked_choices("layers", cfg.layers, LAYERS)
    kernels = checked_choices("kernels", cfg.kernels, KERNELS)
    scalers = checked_choices("scalers", cfg.scalers, SCALERS)
    svm_params = dict(cfg.svm or {})
    grid = {str(k): v for k, v in (cfg.grid or {}).items()}
    check_svc_params(svm_params, grid)
    if cfg.max_train is not None and cfg.max_train < 2:
        raise LabError(f"max_train: expected at least 2 (or null for all), got {cfg.max_train}")
    device = _device(cfg.device)

    # weights: last:<experiment> -> that run's last.ckpt, and normalization: auto ->
    # imagenet for a backbone with torchvision weights, as in `lab fit`
    config = {"data": cfg.data, "model": {"init_args": {"backbone": cfg.backbone}}}
    resolve_latest_weights(config, log_root(cfg.log_root))
    resolve_normalization(config)
    data = _build(cfg.data, "data")
    if not isinstance(data, LabDataModule):
        raise LabError(f"data: expected a lab.data data module, got {cfg.data.class_path}")
    data.setup("fit")
    data.setup("test")
    class_names = [str(n) for n in data.class_names]
    cache_dir = Path(cfg.cache_dir or cache_root() / "features")  # never in the data folder
    files = source_files(data)
    weights = (cfg.backbone.get("init_args") or Namespace()).get("weights")
    if isinstance(weights, str) and Path(weights).is_file():  # a fine-tuned checkpoint
        files.append(Path(weights))

    cfg.experiment = _experiment_name(cfg)
    cfg.log_root = str(log_root(cfg.log_root))
    cfg.cache_dir = str(cache_dir)
    run_dir = claim_run_dir(Path(cfg.log_root) / cfg.experiment)
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
