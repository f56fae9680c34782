"""lab.runs.stats against reference values computed here independently: the Wilson formula as
statsmodels' ``proportion_confint(method="wilson")`` writes it, McNemar's exact p from
``scipy.stats.binom`` directly, scikit-learn's F1 and AUC, a hand-rolled bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm
from sklearn.metrics import f1_score, roc_auc_score

from lab.errors import LabError
from lab.runs.stats import (
    bootstrap_interval,
    macro_auc,
    macro_f1,
    mcnemar_exact,
    paired_difference,
    verdict,
    wilson_interval,
)


def wilson_reference(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """statsmodels.stats.proportion.proportion_confint(k, n, method="wilson"), written out."""
    z = norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("k", "n"), [(356, 360), (0, 10), (10, 10), (0, 1), (1, 1), (3, 7), (180, 360)]
)
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    ref_low, ref_high = wilson_reference(k, n)
    assert low == pytest.approx(max(ref_low, 0.0), abs=1e-9)
    assert high == pytest.approx(min(ref_high, 1.0), abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_edges() -> None:
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] > 0.1
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0) and wilson_interval(20, 20)[0] < 0.9
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    low99, high99 = wilson_interval(30, 40, confidence=0.99)
    assert (low99, high99) == pytest.approx(wilson_reference(30, 40, 0.99), abs=1e-9)
    with pytest.raises(LabError, match="0 <= k <= n"):
        wilson_interval(5, 4)


def mcnemar_reference(b: int, c: int) -> float:
    """Two-sided exact binomial p: twice the smaller tail of Binomial(b + c, 1/2)."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5))


def outcomes(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, dtype=bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, dtype=bool)
    return a, b


@pytest.mark.parametrize(
    ("only_a", "only_b"), [(0, 0), (5, 0), (0, 5), (7, 3), (12, 12), (1, 0), (30, 11)]
)
def test_mcnemar_matches_the_binomial(only_a: int, only_b: int) -> None:
    a, b = outcomes(100, only_a, only_b, 20)
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.p_value == pytest.approx(mcnemar_reference(only_a, only_b), rel=1e-9)


def test_mcnemar_known_value_and_shape_errors() -> None:
    # 10 against 0 discordant images: p = 2 / 2**10
    assert mcnemar_exact(*outcomes(50, 10, 0, 5)).p_value == pytest.approx(2 / 1024)
    with pytest.raises(LabError, match="one length"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_paired_difference() -> None:
    a, b = outcomes(300, 20, 5, 35)
    difference, low, high = paired_difference(a, b)
    assert difference == pytest.approx(15 / 360)
    assert low < difference < high
    assert low > 0  # 20 against 5 is a real difference
    same = np.ones(10, bool)
    assert paired_difference(same, same) == (0.0, 0.0, 0.0)
    all_wrong = np.zeros(10, bool)
    assert paired_difference(all_wrong, all_wrong) == (0.0, 0.0, 0.0)
    d, low, high = paired_difference(same, all_wrong)
    assert (d, low, high) == (1.0, 1.0, 1.0)


def test_bootstrap_matches_a_plain_resampling_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    low, high = bootstrap_interval(np.mean, x, n_resamples=2000, seed=3)
    # the same question answered by a plain numpy loop: close, not identical (other draws)
    draws = np.random.default_rng(7).integers(0, 200, size=(4000, 200))
    ref_low, ref_high = np.quantile(x[draws].mean(axis=1), [0.025, 0.975])
    assert low == pytest.approx(ref_low, abs=0.03)
    assert high == pytest.approx(ref_high, abs=0.03)
    assert bootstrap_interval(np.mean, x, seed=3) == bootstrap_interval(np.mean, x, seed=3)
    assert all(math.isnan(v) for v in bootstrap_interval(np.mean, x[:1]))


def test_macro_f1_and_auc_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 300)
    y[y == 5] = 4  # class 5 never a target ...
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, 300))  # ... but predicted
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    scores = rng.normal(size=(300, 6))
    scores[np.arange(300), y] += 1.0
    scores[:10, 0] = scores[10, 0]  # ties
    expected = np.mean([roc_auc_score(y == c, scores[:, c]) for c in range(5)])
    assert macro_auc(y, scores) == pytest.approx(expected)
    assert math.isnan(macro_auc(np.zeros(5, int), np.zeros((5, 2))))  # no negatives
    low, high = bootstrap_interval(macro_f1, y, p, n_resamples=300)
    assert low < macro_f1(y, p) < high


def test_verdict() -> None:
    assert verdict(0.62, 0.9, 0.91) == "the difference is within noise (p = 0.62)"
    assert verdict(0.003, 0.95, 0.9, "demo", "other") == "demo is better than other (p = 0.003)"
    assert verdict(0.003, 0.9, 0.95) == "B is better than A (p = 0.003)"
