"""CNN features for classical classifiers: extract them once, keep them in a cache.

:func:`extract_features` runs a backbone over a loader (eval mode, no autograd) and
returns the penultimate vector (``forward_features``) or the classifier's output
(``forward``, e.g. the 1000 ImageNet logits), or the input images themselves, flattened
as the backbone sees them (``pixels``: the baseline of a classical classifier on raw
pixels, in the same table). :func:`cached_features` keeps such arrays
in ``.npz`` files named by a hash of the settings that made them (backbone config and
weights, layer, data settings, split) and of the source data files' names, sizes and
modification times (``lab.data.cache.fingerprint``): changed data or settings give a
new file, and a file that cannot be read is recomputed, never trusted.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from lab.data.cache import fingerprint
from lab.errors import LabError, WriteError
from lab.io import atomic_path

Layer = Literal["penultimate", "logits", "pixels"]
LAYERS: tuple[str, ...] = ("penultimate", "logits", "pixels")
CACHE_VERSION = 1  # bump when what a cache file holds changes meaning

Features = tuple[np.ndarray, np.ndarray]


def check_layer(backbone: nn.Module, layer: str) -> None:
    """Raise a LabError if ``backbone`` cannot give ``layer``."""
    if layer not in LAYERS:
        raise LabError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    if layer == "penultimate" and not hasattr(backbone, "forward_features"):
        raise LabError(
            f"layer 'penultimate' needs a backbone with forward_features(), "
            f"{type(backbone).__name__} has none"
        )
    if layer == "logits" and getattr(backbone, "num_classes", None) == 0:
        raise LabError(
            "layer 'logits' needs a backbone with a classifier, this one has num_classes 0: "
            "set backbone.init_args.num_classes (1000 for the ImageNet classifier)"
        )


def extract_layers(
    backbone: nn.Module,
    loader: Iterable,
    layers: Sequence[str],
    device: torch.device | str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every requested layer in one pass: ``({layer: (N, D) float32}, labels (N,) int64)``.

    The labels come from the same batches as the images, so the rows always match.
    """
    for layer in layers:
        check_layer(backbone, layer)
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    labels: list[np.ndarray] = []
    with torch.inference_mode():
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            outputs: dict[str, torch.Tensor] = {}
            if "penultimate" in layers:
                outputs["penultimate"] = backbone.forward_features(images)
                if "logits" in layers and hasattr(backbone, "forward_head"):
                    # forward() is forward_head(forward_features()): no second trunk pass
                    outputs["logits"] = backbone.forward_head(outputs["penultimate"])
            if "logits" in layers and "logits" not in outputs:
                outputs["logits"] = backbone(images)
            if "pixels" in layers:  # the normalised images, as the backbone sees them
                outputs["pixels"] = images
            for layer in layers:
                parts[layer].append(outputs[layer].float().flatten(1).cpu().numpy())
            labels.append(torch.as_tensor(targets).cpu().numpy().astype(np.int64))
    if not labels:
        raise LabError("the feature loader gave no batches (an empty split?)")
    return (
        {layer: np.concatenate(p).astype(np.float32, copy=False) for layer, p in parts.items()},
        np.concatenate(labels),
    )


def extract_features(
    backbone: nn.Module, loader: Iterable, layer: Layer, device: torch.device | str
) -> Features:
    """``(features (N, D) float32, labels (N,) int64)`` of one layer: ``penultimate`` is
    ``backbone.forward_features(x)`` (2048-d for a ResNet-50), ``logits`` is
    ``backbone(x)`` (the classifier's output; a LabError if it has none), ``pixels`` the
    flattened input images."""
    features, labels = extract_layers(backbone, loader, [layer], device)
    return features[layer], labels


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    # Paths, tuples and other values become their JSON / str form, as in a config file.
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def cache_file(key_settings: dict[str, Any], source_files: Sequence[Path], cache_dir: Path) -> Path:
    """Where the features made with these settings from these files are kept."""
    settings = {"settings": _jsonable(key_settings), "version": CACHE_VERSION}
    files = sorted(Path(f) for f in source_files)
    return Path(cache_dir) / f"{fingerprint(files, settings)}.npz"


def _read(path: Path) -> Features:
    with np.load(path, allow_pickle=False) as content:
        features, labels = content["features"], content["labels"]
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"shapes {features.shape} and {labels.shape} do not match")
    if features.dtype != np.float32 or labels.dtype != np.int64:
        raise ValueError(f"dtypes {features.dtype} and {labels.dtype}, not float32 and int64")
    return features, labels


def _write(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    # A handle: np.savez would add ".npz" to the temporary file's name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, features=features, labels=labels)


def cached_features(
    key_settings: dict[str, Any],
    source_files: Sequence[Path],
    cache_dir: Path,
    compute: Callable[[], Features],
) -> Features:
    """The features ``compute()`` makes, read from ``cache_dir`` when they were made before.

    Args:
        key_settings: everything that changes the features (backbone config with its
            weights, layer, data settings, split); JSON-able (other values by ``str``).
        source_files: the data files the features come from; their names, sizes and
            modification times are part of the key.
        cache_dir: where the ``<hash>.npz`` files go.
        compute: makes ``(features (N, D) float32, labels (N,) int64)`` on a miss.
    """
    path = cache_file(key_settings, source_files, cache_dir)
    if path.is_file():
        try:
            return _read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            warnings.warn(
                f"feature cache {path} cannot be read ({error}); computing it again",
                stacklevel=2,
            )
    features, labels = compute()
    features = np.ascontiguousarray(features, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    try:
        _write(path, features, labels)
    except WriteError as error:  # the cache root is full or read-only, not the log root
        error.fix = "--cache_dir"
        raise
    return features, labels
