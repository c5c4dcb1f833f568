"""Estimators of mu: signs, invariances, calibration, bad input (METHOD §3, §4)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finf_stats import METHODS, InfluenceResult, InfluenceResults, SampleError
from finf_stats import influence_from_samples as estimate
from finf_stats.calibration import gaussian_calibration
from finf_stats.estimators import separation_lower_bound

RANK_METHODS = ("auc", "probit", "threshold-max")
FAST = {"n_bootstrap": 200, "n_null": 500}


def samples(seed, mu, n=60, m=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if m is None else (m, n)
    return rng.normal(size=shape), rng.normal(mu, 1, size=shape)


# --------------------------------------------------------------------------- sign and order
@settings(max_examples=15, deadline=None)
@given(st.sampled_from(METHODS), st.floats(-2, 2), st.integers(0, 10_000))
def test_swapping_samples_flips_the_sign(method, mu, seed):
    x, y = samples(seed, mu)
    a = estimate(x, y, method=method, **FAST)
    b = estimate(y, x, method=method, **FAST)
    assert b.mu == pytest.approx(-a.mu, abs=1e-9)
    if method in ("binormal", "auc"):  # analytic intervals mirror exactly
        assert b.ci_low == pytest.approx(-a.ci_high, abs=1e-6)
        assert b.p_value == pytest.approx(a.p_value, rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_sign_convention_removing_a_helpful_point_raises_the_loss(method):
    x, y = samples(0, 1.0, n=200)  # without S the loss is higher: S helps, mu > 0
    r = estimate(x, y, method=method, **FAST)
    assert r.mu > 0 and r.ci_low > 0 and r.p_value < 0.01


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(RANK_METHODS), st.floats(-2, 2), st.integers(0, 10_000),
       st.sampled_from([np.exp, np.arctan, lambda v: v**3 + v, lambda v: 5 * v - 2]))
def test_rank_estimators_invariant_under_increasing_transforms(method, mu, seed, g):
    x, y = samples(seed, mu)
    a = estimate(x, y, method=method, seed=1, **FAST)
    b = estimate(g(x), g(y), method=method, seed=1, **FAST)
    assert b.mu == a.mu
    assert (b.ci_low, b.ci_high, b.p_value) == (a.ci_low, a.ci_high, a.p_value)


# --------------------------------------------------------------------------- batch behaviour
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_row_by_row(method):
    X, Y = samples(2, 0.7, n=40, m=4)
    batch = estimate(X, Y, method=method, **FAST)
    assert isinstance(batch, InfluenceResults) and len(batch) == 4
    for i in range(4):
        single = estimate(X[i], Y[i], method=method, **FAST)
        assert isinstance(single, InfluenceResult)
        assert batch.mu[i] == pytest.approx(single.mu, abs=1e-12)
        if method in ("binormal", "auc"):
            assert batch.ci_low[i] == pytest.approx(single.ci_low, abs=1e-8)
        assert batch.probit_slope[i] == pytest.approx(single.probit_slope, nan_ok=True)


def test_shared_with_sample_broadcasts():
    X, Y = samples(3, 0.5, n=50, m=6)
    shared = estimate(X[0], Y)
    explicit = estimate(np.repeat(X[:1], 6, axis=0), Y)
    assert np.array_equal(shared.mu, explicit.mu)
    assert np.array_equal(shared.n_with, np.full(6, 50))


def test_batch_exports_to_pandas_and_flags():
    X, Y = samples(4, 0.0, n=80, m=30)
    Y[:5] += 1.5
    res = estimate(X, Y).with_labels([f"c{i}" for i in range(30)])
    frame = res.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:8]) == ["candidate", "mu", "ci_low", "ci_high", "p_value",
                                       "method", "n_with", "n_without"]
    holm, bh = res.flags("holm"), res.flags("fdr_bh")
    assert holm[:5].all() and bh[:5].all()
    assert holm.sum() <= bh.sum()
    with pytest.raises(ValueError, match="unknown multiple-testing method"):
        res.flags("sidak-ish")


def test_same_seed_same_numbers():
    x, y = samples(5, 0.4)
    for method in ("threshold-max", "probit"):
        a = estimate(x, y, method=method, seed=7, **FAST)
        b = estimate(x, y, method=method, seed=7, **FAST)
        assert a == b


# --------------------------------------------------------------------------- calibration
# Coverage of nominal 95% intervals on N(0,1) vs N(mu,1); 400 repetitions (se ~ 1.1%).
CALIBRATED = [
    ("auc", 50, 0.0), ("auc", 50, 0.5), ("auc", 50, 1.5), ("auc", 200, 0.5), ("auc", 200, 3.0),
    ("binormal", 20, 0.5), ("binormal", 50, 1.5), ("binormal", 200, 0.0), ("binormal", 200, 3.0),
    ("probit", 200, 0.5), ("probit", 200, 1.5),
]


@pytest.mark.parametrize(("method", "n", "mu"), CALIBRATED)
def test_interval_coverage_is_nominal(method, n, mu):
    reps = 400 if method != "probit" else 300
    opts = {} if method != "probit" else {"n_bootstrap": 400}
    r = gaussian_calibration(method, mu, n, repetitions=reps, seed=11, **opts)
    assert 0.92 <= r["coverage"] <= 0.98, r


def test_threshold_max_is_biased_away_from_zero():
    """The paper's estimator is a maximum over thresholds: biased upward for mu != 0."""
    r = gaussian_calibration("threshold-max", 0.5, 100, repetitions=200, seed=3, n_bootstrap=200)
    assert r["bias"] > 0.2
    assert r["coverage"] < 0.8


@pytest.mark.parametrize("method", METHODS)
def test_null_test_rejects_at_nominal_level(method):
    """Under P = Q a level-0.05 test of mu = 0 rejects about 5% of the time."""
    reps = 600 if method in ("auc", "binormal") else 300
    r = gaussian_calibration(method, 0.0, 60, repetitions=reps, seed=21, **(
        {} if method in ("auc", "binormal") else {"n_bootstrap": 100, "n_null": 1000}))
    se = np.sqrt(0.05 * 0.95 / reps)
    assert abs(r["rejection_rate"] - 0.05) < 3 * se + 0.005, r


# --------------------------------------------------------------------------- degenerate input
@pytest.mark.parametrize("method", METHODS)
def test_separated_samples_give_infinite_mu_with_finite_bound(method):
    x = np.linspace(0, 1, 30)
    y = np.linspace(2, 3, 30)
    r = estimate(x, y, method=method, **FAST)
    if method == "binormal":
        assert np.isfinite(r.mu) and r.mu > 3  # the Gaussian MLE stays finite
    else:
        assert r.mu >= 2.5 and np.isinf(r.ci_high)
        assert 0 < r.ci_low < np.inf
        assert r.p_value < 1e-15
        if method != "threshold-max":
            assert r.mu == np.inf
        down = estimate(y, x, method=method, **FAST)
        assert down.ci_high == pytest.approx(-r.ci_low) and np.isinf(down.ci_low)


def test_separation_bound_is_a_valid_confidence_bound():
    """P_mu(separation) at the bound equals (1 - confidence) / 2, checked by Monte Carlo."""
    bound = separation_lower_bound(10, 10, 0.95)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 10))
    y = rng.normal(bound, 1, size=(200_000, 10))
    p = np.mean(y.min(1) > x.max(1))
    assert p == pytest.approx(0.025, abs=0.002)


def test_constant_equal_samples_are_an_error_naming_the_candidate():
    X = np.random.default_rng(0).normal(size=(3, 10))
    Y = X + 1
    X[1], Y[1] = 2.0, 2.0
    with pytest.raises(SampleError, match=r"candidate\(s\) 1: .*same constant"):
        estimate(X, Y)


def test_constant_but_different_samples_are_separated():
    r = estimate(np.zeros(10), np.ones(10), method="binormal")
    assert r.mu == np.inf and np.isfinite(r.ci_low)


@pytest.mark.parametrize(("x", "message"), [
    ([1.0, np.nan, 2.0], "NaN"),
    ([1.0, np.inf, 2.0], "inf"),
    ([], "empty"),
    ([1.0], "at least 2"),
    ([[[1.0, 2.0]]], "1-D .* or 2-D"),
    (["a", "b"], "numeric"),
])
def test_bad_samples_get_clear_errors(x, message):
    with pytest.raises(SampleError, match=message):
        estimate(x, [1.0, 2.0, 3.0])


def test_mismatched_batches_and_unknown_options():
    with pytest.raises(SampleError, match="3 candidates and without_s has 4"):
        estimate(np.zeros((3, 5)) + np.arange(5), np.zeros((4, 5)) + np.arange(5))
    with pytest.raises(ValueError, match="unknown method"):
        estimate([1, 2, 3], [2, 3, 4], method="magic")
    with pytest.raises(ValueError, match="not available for auc"):
        estimate([1, 2, 3], [2, 3, 4], method="auc", interval="exact")
    with pytest.raises(ValueError, match="confidence"):
        estimate([1, 2, 3], [2, 3, 4], confidence=1.5)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30),
       st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30), st.sampled_from(METHODS))
def test_never_a_silent_nan(x, y, method):
    """Any finite input gives numbers (or a clear SampleError), never NaN estimates."""
    try:
        r = estimate(x, y, method=method, n_bootstrap=100, n_null=200)
    except SampleError as err:
        assert "same constant" in str(err)
        return
    assert not np.isnan(r.mu) and not np.isnan(r.ci_low) and not np.isnan(r.ci_high)
    assert r.ci_low <= r.mu <= r.ci_high
    assert 0 <= r.p_value <= 1
