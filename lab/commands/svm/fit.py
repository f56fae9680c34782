"""The SVM settings of ``lab svm`` (layer x kernel x scaler x grid values) and fitting
and evaluating each one on cached features: a ``Pipeline([scale, SVC])`` fitted on the
training split, asked only for decision values on val and test."""

from __future__ import annotations

import itertools
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from lab.callbacks.evaluation import write_evaluation
from lab.callbacks.predictions import write_split_predictions
from lab.commands.svm.tables import plot_svm, write_tables
from lab.errors import LabError

KERNELS = ("rbf", "linear", "poly", "sigmoid")
SCALERS = ("none", "standard", "minmax")
SPLITS = ("train", "val", "test")
# Set by the command itself: the kernel by ``kernels``, the seed by ``seed``, and ovr
# decision values are what the ROC curves are drawn from.
_FIXED_SVC = ("kernel", "decision_function_shape", "random_state")
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


def checked_choices(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """``values`` without repeats; a LabError for an empty list or a value not ``allowed``."""
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
        intervals = write_setting_predictions(
            out_dir / setting.name, test.scores, y_test, list(class_names), seed
        )
        row: dict[str, Any] = {
            "layer": setting.layer,
            "kernel": setting.kernel,
            "scaler": setting.scaler,
            **setting.params,
            "n_train": len(y_train),
            "val_acc": val.accuracy,
            "test_acc": test.accuracy,
            "test_acc_low": intervals["test/acc"][0],
            "test_acc_high": intervals["test/acc"][1],
            "test_macro_f1": test.macro_f1,
            "test_macro_f1_low": intervals["test/macro_f1"][0],
            "test_macro_f1_high": intervals["test/macro_f1"][1],
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


def write_setting_predictions(
    folder: Path, scores: np.ndarray, targets: np.ndarray, class_names: list[str], seed: int
) -> dict[str, tuple[float, float]]:
    """A setting's ``predictions.csv`` (its test split, scores = decision values) and
    ``intervals.csv`` in its folder; returns ``{metric: (low, high)}``."""
    intervals = write_split_predictions(folder, scores, targets, class_names, False, seed=seed)
    return {row.metric: (row.low, row.high) for row in intervals.itertuples()}
