"""How sure a test number is: confidence intervals and paired tests, computed with SciPy.

- :func:`wilson_interval`: the Wilson score interval of an accuracy (``k`` of ``n`` test
  images right), SciPy's ``binomtest(...).proportion_ci(method="wilson")``.
- :func:`bootstrap_interval`: a percentile bootstrap over test images for metrics with no
  closed-form interval (macro F1, macro AUC, MAP@R), ``scipy.stats.bootstrap``.
- :func:`mcnemar_exact`: the exact McNemar test of two classifiers on the same images,
  a two-sided binomial test on the images exactly one of them gets right.
- :func:`paired_difference`: the accuracy difference of two such classifiers with a
  paired bootstrap interval.

All intervals are 95% unless told otherwise. See docs/uncertainty.md for what they mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lab.errors import LabError


def _scipy_stats():  # noqa: ANN202 (a module)
    """``scipy.stats``, imported on first use: it takes about 0.7 s on 2 cores, and the
    commands that only read run folders (``lab summary``, ``--help``) never need it."""
    from scipy import stats

    return stats


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of a proportion ``k / n``; ``(nan, nan)``
    when ``n`` is 0 (nothing was measured). Stays inside [0, 1], also at ``k = 0`` and
    ``k = n``, where the normal-approximation interval collapses to a point."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise LabError(f"expected 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    ci = _scipy_stats().binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_interval(
    metric_fn: Callable[..., float],
    *arrays: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``metric_fn(*arrays)`` over test
    images: each resample draws the images (rows of every array together, so pairs stay
    pairs) with replacement.

    ``scipy.stats.bootstrap`` resamples the row *indices* (``paired``-style): our metrics
    (macro F1 over classes, AUC over score matrices) are not means of per-image values, so
    they take whole arrays, which SciPy's own paired resampling of 1-d samples cannot
    hand over. The percentile method is used because BCa's jackknife would cost one metric
    call per image. Resamples where the metric is undefined (NaN, e.g. a class with no
    positives left) are dropped; ``(nan, nan)`` if there are fewer than two images.
    """
    if not arrays:
        raise LabError("expected at least one array to resample")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise LabError(f"expected arrays of one length, got {[len(a) for a in arrays]}")
    if n < 2:
        return float("nan"), float("nan")

    def statistic(index: np.ndarray) -> float:
        index = index.astype(np.int64)
        return float(metric_fn(*(a[index] for a in arrays)))

    result = _scipy_stats().bootstrap(
        (np.arange(n),),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        random_state=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # some resamples undefined: drop them
        values = np.asarray(result.bootstrap_distribution, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return float("nan"), float("nan")
        alpha = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(values, [alpha, 1 - alpha]))
    return low, high


def macro_f1(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Macro F1 over the classes that occur in ``targets`` or ``predictions``: the value of
    ``sklearn.metrics.f1_score(targets, predictions, average="macro")`` (a class with no
    true positive scores 0), from one ``bincount`` confusion matrix, because scikit-learn's
    input checks cost milliseconds a call and a bootstrap makes a thousand calls."""
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    num_classes = int(max(targets.max(initial=-1), predictions.max(initial=-1))) + 1
    if num_classes == 0:
        return float("nan")
    counts = np.bincount(targets * num_classes + predictions, minlength=num_classes**2)
    matrix = counts.reshape(num_classes, num_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    actual, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    seen = (actual + predicted) > 0
    f1 = 2 * true_positive[seen] / (actual[seen] + predicted[seen])
    return float(f1.mean())


def macro_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes with at least one positive and one
    negative image (NaN if none has): ``sklearn.metrics.roc_auc_score`` of each such
    column, computed for all columns at once as the Mann-Whitney statistic of SciPy's
    average ranks (ties count one half), so a bootstrap can afford it."""
    targets = np.asarray(targets, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    positive = targets[:, None] == np.arange(scores.shape[1])[None, :]
    n_pos = positive.sum(axis=0)
    n_neg = len(targets) - n_pos
    defined = (n_pos > 0) & (n_neg > 0)
    if not defined.any():
        return float("nan")
    ranks = _scipy_stats().rankdata(scores[:, defined], axis=0)
    pos, n_pos, n_neg = positive[:, defined], n_pos[defined], n_neg[defined]
    rank_sum = (ranks * pos).sum(axis=0)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc.mean())


@dataclass(frozen=True)
class McNemar:
    """The discordant pairs of two classifiers and the exact McNemar p-value."""

    only_a: int  # images A gets right and B wrong
    only_b: int  # images B gets right and A wrong
    p_value: float


def _paired(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise LabError(
            f"expected two 1-d right/wrong arrays of one length, got {a.shape} and {b.shape}"
        )
    return a, b


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """The exact McNemar test: under "A and B are equally good", each image only one of
    them gets right is A's with probability 1/2, so the count of A's is Binomial(b + c,
    1/2); two-sided ``scipy.stats.binomtest``. p = 1 when there are no such images."""
    a, b = _paired(correct_a, correct_b)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    p = _scipy_stats().binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
    return McNemar(only_a, only_b, float(min(p, 1.0)))


def paired_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same images, with a paired percentile
    bootstrap interval: ``(difference, low, high)``.

    A paired bootstrap (resampling images, each with both right/wrong outcomes) keeps the
    correlation between the two runs, which is what makes a paired interval narrower than
    two separate ones; unlike Newcombe's score interval it needs no formula of its own and
    is the same method the other metrics' intervals use. With no discordant images the
    difference is 0 with interval [0, 0] (every resample agrees).
    """
    a, b = _paired(correct_a, correct_b)
    if len(a) == 0:
        raise LabError("expected at least one test image to compare, got none")
    difference = float(a.mean() - b.mean())
    if not np.any(a != b):
        return difference, 0.0, 0.0
    low, high = bootstrap_interval(
        lambda x, y: x.mean() - y.mean(),
        a.astype(np.float64),
        b.astype(np.float64),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    return difference, low, high


def verdict(
    p_value: float,
    accuracy_a: float,
    accuracy_b: float,
    name_a: str = "A",
    name_b: str = "B",
    alpha: float = 0.05,
) -> str:
    """One sentence: which run is better (p < ``alpha``), or that the difference is within
    noise."""
    if p_value >= alpha or accuracy_a == accuracy_b:
        return f"the difference is within noise (p = {p_value:.2g})"
    better, worse = (name_a, name_b) if accuracy_a > accuracy_b else (name_b, name_a)
    return f"{better} is better than {worse} (p = {p_value:.2g})"
