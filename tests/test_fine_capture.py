"""In-run capture (simulations.capture): sparse == dense, TracIn by-product, Stage-1 options."""

from __future__ import annotations

import numpy as np
import pytest

from finf_stats.fine import fine_config
from simulations.baselines import TracInObserver, candidate_weights
from simulations.capture import run_fine
from simulations.engine import design_matrix
from simulations.recipes import Recipe, Schedule


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    y = rng.integers(0, 3, 120)
    Xt = rng.standard_normal((1, 5))
    rec = Recipe(model="multinomial", epochs=8, batch_size=16, schedule=Schedule(lr=0.2),
                 l2=1e-3)
    return rec, X, y, Xt, np.array([1]), np.arange(20)


def test_sparse_capture_equals_dense(problem):
    rec, X, y, Xt, yt, cands = problem
    sparse = run_fine(rec, X, y, Xt, yt, cands, "paper", seeds=[0, 1])
    dense = run_fine(rec, X, y, Xt, yt, [np.array([i]) for i in cands], "paper", seeds=[0, 1])
    assert type(sparse.capture.acc).__name__ == "EventFineAccumulator"
    assert type(dense.capture.acc).__name__ == "FineAccumulator"
    for a, b in zip(sparse.results(), dense.results(), strict=True):
        assert np.allclose(a.mu, b.mu) and np.allclose(a.ci_low, b.ci_low)
    assert np.allclose(sparse.capture.tracin, dense.capture.tracin)


def test_tracin_by_product_equals_observer(problem):
    rec, X, y, Xt, yt, cands = problem
    obs = TracInObserver(design_matrix(Xt, True), yt, candidate_weights(cands, len(y)))
    run = run_fine(rec, X, y, Xt, yt, cands, "paper", seeds=[0, 1], observers=(obs,))
    assert np.allclose(obs.tracin[:2], run.capture.tracin)
    assert run.capture.final_target.shape == (4, 1)       # 2 runs + 2 auxiliary runs


@pytest.mark.parametrize("override", [
    {"similarity": "cosine"}, {"logging": "in_batch"}, {"logging": "every_k", "every_k": 3},
    {"decorrelation": "diff"}, {"decorrelation": "none"}, {"effect": "expected"},
])
def test_stage1_options_change_the_signals(problem, override):
    rec, X, y, Xt, yt, cands = problem
    cfg = fine_config("paper", estimator="binormal", scaling="none")
    base = run_fine(rec, X, y, Xt, yt, cands, cfg, seeds=[0])
    other = run_fine(rec, X, y, Xt, yt, cands, fine_config(cfg, **override), seeds=[0])
    assert not np.allclose(base.results()[0].mu, other.results()[0].mu)
    if override.get("logging") == "in_batch":
        assert np.all(other.capture.acc.count == rec.epochs)   # each point: once per epoch
    if override.get("logging") == "every_k":
        assert np.all(other.capture.acc.count == -(-8 * 8 // 3))


def test_contraction_discount_shrinks_effect(problem):
    rec, X, y, Xt, yt, cands = problem
    cfg = fine_config("calibrated")
    no = run_fine(rec, X, y, Xt, yt, cands, fine_config(cfg, discount="none"), seeds=[0])
    yes = run_fine(rec, X, y, Xt, yt, cands, cfg, seeds=[0])
    a = np.abs(no.capture.acc.effect_sum())
    b = np.abs(yes.capture.acc.effect_sum())
    assert np.all(b <= a + 1e-12) and b.sum() < 0.9 * a.sum()


def test_replica_mismatch_is_refused(problem):
    from simulations.capture import FineCapture
    from simulations.engine import train

    rec, X, y, Xt, yt, cands = problem
    cap = FineCapture(design_matrix(Xt, True), yt, cands, "paper", n_runs=2)
    with pytest.raises(ValueError, match="replicas"):
        train(rec, X, y, seeds=[0, 1, 2], observers=[cap])
