"""Metrics shared by every study."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from finf_stats import SampleError
from finf_stats.metrics import (
    auc_score,
    coefficient_of_variation,
    recall_at_fraction,
    spearman_with_interval,
    topk_jaccard,
)


def test_jaccard_of_identical_and_disjoint_rankings():
    s = np.arange(20.0)
    assert topk_jaccard(np.vstack([s, s, s]), k=5)["mean"] == 1.0
    assert topk_jaccard(np.vstack([s, -s]), k=5)["mean"] == 0.0
    # k = 10% of candidates by default; two of three top-2 sets share one element
    j = topk_jaccard(np.vstack([s, s, np.r_[s[:-1], -1.0]]))
    assert j["k"] == 2 and j["pairs"] == 3
    assert j["mean"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)


def test_jaccard_of_independent_noise_is_near_chance():
    rng = np.random.default_rng(0)
    j = topk_jaccard(rng.normal(size=(10, 1000)), k=100)["mean"]
    chance = 100 / (2 * 1000 - 100)  # E|A∩B| = k²/n, union = 2k - k²/n
    assert j == pytest.approx(chance, abs=0.01)


def test_coefficient_of_variation():
    rng = np.random.default_rng(1)
    scores = rng.normal(10.0, 1.0, size=(400, 50))
    cv = coefficient_of_variation(scores)
    assert cv["median"] == pytest.approx(0.1, abs=0.01)
    assert coefficient_of_variation(scores * -7)["median"] == pytest.approx(cv["median"])
    with pytest.raises(SampleError, match="at least 2 runs"):
        coefficient_of_variation(scores[:1])


def test_recall_and_auc():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3])
    positive = np.array([1, 0, 0, 1, 0, 1], bool)
    assert recall_at_fraction(scores, positive, 0.5) == pytest.approx(2 / 3)
    assert recall_at_fraction(scores, positive, 1.0) == 1.0
    assert auc_score(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    with pytest.raises(SampleError, match="no positives"):
        recall_at_fraction(scores, np.zeros(6, bool), 0.5)
    with pytest.raises(SampleError, match="differ in length"):
        auc_score(scores, positive[:3])


def test_spearman_interval_covers_and_matches_scipy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    r = spearman_with_interval(a, b, seed=3)
    assert r["rho"] == pytest.approx(stats.spearmanr(a, b).statistic)
    assert r["ci_low"] < r["rho"] < r["ci_high"]
    # the interval's width matches the sampling spread of rho over fresh samples
    rhos = []
    for s in range(200):
        g = np.random.default_rng(100 + s)
        x = g.normal(size=200)
        rhos.append(stats.spearmanr(x, x + g.normal(size=200)).statistic)
    assert (r["ci_high"] - r["ci_low"]) == pytest.approx(2 * 1.96 * np.std(rhos), rel=0.3)
    with pytest.raises(SampleError, match="constant"):
        spearman_with_interval(np.ones(10), np.arange(10))
    with pytest.raises(SampleError, match="NaN"):
        spearman_with_interval([1, np.nan, 3], [1, 2, 3])
