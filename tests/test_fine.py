"""f-INE Stage 2 (finf_stats.fine): streaming accumulators, options, sign, scaling."""

from __future__ import annotations

import numpy as np
import pytest

from finf_stats.fine import PRESETS, FineAccumulator, FineConfig, FineError, fine_config


def _stream(acc: FineAccumulator, T: int, delta: np.ndarray, sigma: float = 1.0,
            trend: float = 0.0, seed: int = 0, logged_every: int | None = None,
            rho: float | None = None) -> None:
    """Feed T steps: base = trend*t + noise, aux = trend*t + noise, effect = delta."""
    rng = np.random.default_rng(seed)
    n = delta.shape[-1]
    for t in range(T):
        common = trend * (T - t)
        base = common + sigma * rng.standard_normal(acc.shape[:-1] + (1,))
        aux = common + sigma * rng.standard_normal(acc.shape[:-1] + (1,))
        logged = None
        if logged_every is not None:
            logged = (np.arange(n) + t) % logged_every == 0
        acc.update(delta, base, aux, logged=logged, contraction=rho)


def test_sign_and_scale_binormal_did():
    """mu_step = delta / (sigma sqrt 2) under did; mu = sqrt(T) mu_step; helpers are > 0."""
    T, sigma = 400, 1.0
    delta = np.array([0.3, -0.3, 0.0, 0.15])
    acc = FineAccumulator(4, fine_config("paper", estimator="binormal"), n_steps=T)
    _stream(acc, T, delta, sigma)
    res = acc.results()
    expected = np.sqrt(T) * delta / (sigma * np.sqrt(2))
    assert np.all(np.abs(res.mu - expected) < 0.35 * np.sqrt(T) * 0.1 + 0.8)
    assert res.mu[0] > 2 and res.mu[1] < -2
    assert res.ci_low[0] < expected[0] < res.ci_high[0]
    assert res.ci_low[2] < 0 < res.ci_high[2]


def test_paper_threshold_max_runs_and_is_biased_away_from_zero():
    T = 300
    delta = np.array([0.2, 0.0])
    acc = FineAccumulator(2, "paper", n_steps=T)
    _stream(acc, T, delta)
    res = acc.results()
    assert res.method.startswith("fine[threshold-max")
    assert res.mu[0] > 0
    step_true = 0.2 / np.sqrt(2)
    assert res.mu[0] / np.sqrt(T) > 0.8 * step_true


def test_decorrelation_removes_trend():
    """A strong trend inflates the per-step sd under 'none'; 'did' and 'diff' remove it."""
    T = 300
    delta = np.array([0.5])
    mus = {}
    for deco in ("none", "diff", "did"):
        acc = FineAccumulator(1, fine_config("paper", decorrelation=deco, estimator="binormal"))
        _stream(acc, T, delta, trend=0.1)
        mus[deco] = acc.results().mu[0] / np.sqrt(acc.count[0])
    assert mus["none"] < 0.1          # trend sd ~ 0.1*T/sqrt(12) ~ 8.7 drowns delta
    assert abs(mus["did"] - 0.5 / np.sqrt(2)) < 0.12
    assert abs(mus["diff"] - 0.5 / np.sqrt(2)) < 0.12
    acc = FineAccumulator(1, fine_config("paper", decorrelation="diff"))
    _stream(acc, 10, delta)
    assert acc.count[0] == 9          # first differences drop the first logged step


def test_did_requires_aux():
    acc = FineAccumulator(2, "paper")
    with pytest.raises(FineError, match="aux"):
        acc.update(np.zeros(2), 0.0)


def test_estimator_option_changes_method():
    T = 200
    delta = np.array([0.2, -0.1, 0.05])
    out = {}
    for est in ("threshold-max", "binormal", "auc", "probit"):
        acc = FineAccumulator(3, fine_config("paper", estimator=est, scaling="none"))
        _stream(acc, T, delta)
        r = acc.results()
        out[est] = r.mu
        assert est in r.method
    assert not np.allclose(out["threshold-max"], out["binormal"])
    assert np.allclose(out["auc"], out["binormal"], atol=0.1)


def test_scaling_options():
    T = 256
    delta = np.array([0.2, -0.1])
    results = {}
    for sc in ("none", "sqrt_steps", "sum", "spread"):
        acc = FineAccumulator(2, fine_config("paper", estimator="binormal", scaling=sc))
        _stream(acc, T, delta)
        results[sc] = acc.results(spread=2.0) if sc == "spread" else acc.results()
    assert np.allclose(results["sqrt_steps"].mu, np.sqrt(T) * results["none"].mu)
    # stationary noise: the sum form agrees with sqrt(T) * binormal within noise
    assert np.allclose(results["sum"].mu, results["sqrt_steps"].mu, rtol=0.15)
    assert np.allclose(results["spread"].mu, T * delta / 2.0)
    with pytest.raises(FineError, match="spread"):
        acc.results()


def test_sum_form_uses_within_block_noise():
    """A slow trend in the base inflates the pooled sd; the block sum form measures the
    noise within blocks of logged steps, so it is robust to it even without decorrelation."""
    T = 512
    accs = {sc: FineAccumulator(1, fine_config("paper", estimator="binormal", scaling=sc,
                                               decorrelation="none"))
            for sc in ("sum", "sqrt_steps")}
    for acc in accs.values():
        _stream(acc, T, np.array([0.1]), sigma=1.0, trend=0.02)
    exact = T * 0.1 / np.sqrt(T * 1.0)
    assert abs(accs["sum"].results().mu[0] - exact) < 0.3 * exact
    assert accs["sqrt_steps"].results().mu[0] < 0.5 * exact


def test_discount_contraction():
    T, rho = 100, 0.95
    delta = np.array([1.0])
    acc = FineAccumulator(1, fine_config("paper", discount="contraction", estimator="binormal",
                                         scaling="spread"))
    _stream(acc, T, delta, rho=rho)
    w = rho ** np.arange(T)[::-1]
    assert np.isclose(acc.effect_sum()[0], w.sum())
    assert np.isclose(acc.scale_factor()[0], w.sum() / np.sqrt((w ** 2).sum()))
    assert np.isclose(acc.effect_sum(discounted=False)[0], T)
    acc0 = FineAccumulator(1, fine_config("paper", estimator="binormal", scaling="spread"))
    _stream(acc0, T, delta, rho=rho)   # discount 'none' ignores the contraction
    assert np.isclose(acc0.effect_sum()[0], T)


def test_logging_mask_counts():
    T, n = 60, 6
    acc = FineAccumulator(n, fine_config("paper", estimator="binormal"))
    _stream(acc, T, np.full(n, 0.1), logged_every=3)
    assert np.all(acc.count == T // 3)
    sig_p, _, counts = acc.signals()
    assert sig_p.shape == (n, T // 3) and np.all(counts == T // 3)


def test_storage_options(tmp_path):
    T, n = 2000, 3
    delta = np.array([0.1, 0.0, -0.1])
    res = {}
    for storage in ("buffer", "reservoir", "moments", "disk"):
        cfg = fine_config("paper", estimator="binormal", storage=storage, reservoir_size=128,
                          store_dir=str(tmp_path))
        acc = FineAccumulator(n, cfg, n_steps=T)
        _stream(acc, T, delta)
        res[storage] = acc.results().mu
        if storage == "reservoir":
            assert acc.signals()[0].shape == (n, 128)     # memory independent of T
        if storage == "moments":
            with pytest.raises(FineError):
                acc.signals()
    assert (tmp_path / "fine_with_s.npy").is_file()
    assert np.allclose(res["buffer"], res["disk"], atol=1e-4)
    assert np.allclose(res["buffer"], res["moments"], atol=1e-3)
    # the reservoir is a uniform subsample: same mu_step, wider noise
    assert np.allclose(res["reservoir"], res["buffer"], atol=0.25 * np.sqrt(T))
    with pytest.raises(FineError, match="moments"):
        FineConfig(storage="moments", estimator="auc")


def test_batch_shape_splits_runs():
    acc = FineAccumulator(3, fine_config("paper", estimator="binormal"), batch_shape=(4,))
    _stream(acc, 50, np.array([0.3, 0.0, -0.3]))
    out = acc.results()
    assert len(out) == 4 and all(len(r) == 3 for r in out)


def test_presets_and_config_roundtrip():
    assert PRESETS["paper"].estimator == "threshold-max"
    assert PRESETS["paper"].decorrelation == "did"
    assert PRESETS["paper"].scaling == "sqrt_steps"
    cfg = fine_config("paper", estimator="auc")
    assert cfg.name == "custom"
    assert FineConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(FineError):
        FineConfig(scaling="bogus")
    with pytest.raises(FineError):
        fine_config("nope")


def test_nonfinite_signal_is_refused():
    acc = FineAccumulator(1, fine_config("paper", decorrelation="none"))
    with pytest.raises(FineError, match="non-finite"):
        acc.update(np.array([np.nan]), 0.0)


def test_across_run_results_refuses_bad_input_and_scales():
    from finf_stats.fine import FineError, across_run_results

    A, sd, steps = np.array([0.2, -0.1, 0.0]), np.array([0.05, 0.05, 0.05]), np.full(3, 10)
    res = across_run_results(A, 0.1, sd, n_spread=None, n_effect=10, n_steps=steps)
    assert np.allclose(res.mu, A / 0.1) and res.p_value[2] == 1.0 and res.p_value[0] < 0.01
    wider = across_run_results(A, 0.1, sd, n_spread=10, n_effect=10, n_steps=steps)
    assert np.all(wider.ci_high - wider.ci_low >= res.ci_high - res.ci_low)
    for kw, match in (({"n_effect": 1}, "n_effect"), ({"spread": 0.0}, "spread"),
                      ({"effect_sum": np.array([np.nan, 0, 0])}, "non-finite")):
        args = {"effect_sum": A, "spread": 0.1, "effect_sd": sd, "n_spread": None,
                "n_effect": 10, "n_steps": steps, **kw}
        with pytest.raises(FineError, match=match):
            across_run_results(**args)
