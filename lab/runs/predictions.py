"""Per-image test predictions (``predictions.csv``) and the intervals of the test metrics
(``intervals.csv``), the files every other uncertainty tool of ``lab`` reads.

``predictions.csv``, one row per test image in test-split order:

- ``index``: the image's position in the test split;
- ``target``, ``target_name``: its true class;
- ``prediction``, ``prediction_name``: the predicted class, the arg-max of the scores.
  For a task that classifies by the nearest class centre (``predict: nearest_centre``,
  e.g. batch-hard triplet alone) the scores are the nearest-centre logits
  (minus the distance to each class centre), so this IS the nearest-centre prediction,
  the one ``test/acc`` counts;
- ``score``: the predicted class's score: its softmax probability for a model's logits,
  the raw score as given otherwise (an SVM's decision value);
- ``top5``: the (up to) five best-scored class indices, best first, space-separated.

``intervals.csv``: ``metric, value, low, high, method``, one row per metric with an
interval (95%): test accuracy (Wilson), macro F1 and macro AUC (percentile bootstrap over
test images). The values are recomputed from the predictions, so they match the logged
ones up to how each library treats classes absent from the test split.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from lab.errors import LabError
from lab.io import atomic_write_text
from lab.runs.stats import bootstrap_interval, macro_auc, macro_f1, wilson_interval

PREDICTIONS_FILE = "predictions.csv"
INTERVALS_FILE = "intervals.csv"
COLUMNS = ("index", "target", "target_name", "prediction", "prediction_name", "score", "top5")
INTERVAL_COLUMNS = ("metric", "value", "low", "high", "method")

# Bootstrapping the macro AUC ranks the whole score matrix per resample: beyond this many
# scores (images x classes) it would take minutes, so the AUC gets no interval.
_AUC_BOOTSTRAP_MAX = 1_000_000


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.9g")
    atomic_write_text(path, buffer.getvalue())


def write_predictions(path: Path, table: pd.DataFrame) -> None:
    """Write a :func:`predictions_table` atomically (temp file + rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_csv(Path(path), table)


def read_predictions(path: Path) -> pd.DataFrame:
    """Read a ``predictions.csv`` (a file, or the run folder holding one)."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".csv":
        path = path / PREDICTIONS_FILE
    if not path.is_file():
        raise LabError(
            f"no {path.name} in {path.parent}: run `lab test` on that run (runs tested before "
            "lab wrote per-image predictions have none)"
        )
    try:
        table = pd.read_csv(path, dtype={"top5": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabError(f"{path} does not parse as CSV ({error})") from None
    missing = [c for c in ("index", "target", "prediction") if c not in table]
    if missing:
        raise LabError(f"{path} lacks the columns {missing}: expected {', '.join(COLUMNS)}")
    return table


def accuracy_of(table: pd.DataFrame) -> float:
    """The share of rows whose prediction is the target."""
    return float((table["prediction"] == table["target"]).mean())


def intervals_table(
    targets: np.ndarray,
    predictions: np.ndarray,
    scores: np.ndarray | None = None,
    prefix: str = "test",
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The ``intervals.csv`` table: accuracy (Wilson), macro F1 (bootstrap) and, given the
    full ``scores (N, C)`` (probabilities or raw scores), macro AUC (bootstrap)."""
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    n = len(targets)
    correct = int((targets == predictions).sum())
    rows = [
        (
            f"{prefix}/acc",
            correct / n if n else float("nan"),
            *wilson_interval(correct, n),
            "wilson",
        )
    ]
    bootstrap = f"bootstrap percentile ({n_resamples} resamples of the test images)"
    if n:
        f1 = macro_f1(targets, predictions)
        low, high = bootstrap_interval(
            macro_f1, targets, predictions, n_resamples=n_resamples, seed=seed
        )
        rows.append((f"{prefix}/macro_f1", f1, low, high, bootstrap))
    if scores is not None and n:
        scores = np.asarray(scores, dtype=np.float64)
        auc = macro_auc(targets, scores)
        if np.isfinite(auc) and scores.size <= _AUC_BOOTSTRAP_MAX:
            low, high = bootstrap_interval(
                macro_auc, targets, scores, n_resamples=n_resamples, seed=seed
            )
            rows.append((f"{prefix}/auc_macro", auc, low, high, bootstrap))
        elif np.isfinite(auc):
            nan = float("nan")
            rows.append((f"{prefix}/auc_macro", auc, nan, nan, "none (too many scores)"))
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def write_intervals(path: Path, table: pd.DataFrame) -> None:
    """Write an :func:`intervals_table` atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_csv(Path(path), table)


def read_intervals(run_dir: Path) -> dict[str, tuple[float, float, float]]:
    """``{metric: (value, low, high)}`` of a run's ``intervals.csv`` ({} without one)."""
    path = Path(run_dir) / INTERVALS_FILE
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {}
    if not set(INTERVAL_COLUMNS[:4]) <= set(table.columns):
        return {}
    return {
        str(row.metric): (float(row.value), float(row.low), float(row.high))
        for row in table.itertuples()
    }


def run_intervals(run_dir: Path) -> dict[str, tuple[float, float, float]]:
    """The intervals of a run: its ``intervals.csv``, else what its ``predictions.csv``
    gives (accuracy and macro F1), else {}."""
    found = read_intervals(run_dir)
    if found or not (Path(run_dir) / PREDICTIONS_FILE).is_file():
        return found
    try:
        table = read_predictions(run_dir)
    except LabError:
        return {}
    computed = intervals_table(table["target"].to_numpy(), table["prediction"].to_numpy())
    return {
        str(row.metric): (float(row.value), float(row.low), float(row.high))
        for row in computed.itertuples()
    }
