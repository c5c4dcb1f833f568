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
    dense = run_fine(rec, X, y, Xt, yt, cands, "paper", seeds=[0, 1], fast=False)
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


@pytest.mark.parametrize("override", [{}, {"logging": "every_k", "every_k": 3}])
def test_fast_dense_capture_equals_step_by_step(problem, override):
    """The buffered, vectorised capture (single points) equals the step-by-step one (groups),
    with gradient noise (the noise term of the decrease) and blocks that end mid-epoch."""
    rec, X, y, Xt, yt, cands = problem
    rec = rec.with_(grad_noise=0.05)
    cfg = fine_config("calibrated", **override)
    fast = run_fine(rec, X, y, Xt, yt, cands, cfg, seeds=[0, 1])
    fast5 = run_fine(rec, X, y, Xt, yt, cands, cfg, seeds=[0, 1], chunk_steps=5)
    slow = run_fine(rec, X, y, Xt, yt, cands, cfg, seeds=[0, 1], fast=False)
    assert fast.capture.fast and not slow.capture.fast
    a_fast = fast.capture.acc.effect_sum()[:2]            # fast keeps all 4 replicas
    assert np.allclose(a_fast, slow.capture.acc.effect_sum(), rtol=1e-9, atol=1e-14)
    assert np.allclose(a_fast, fast5.capture.acc.effect_sum()[:2], rtol=1e-9, atol=1e-14)
    assert np.allclose(fast.capture.tracin, slow.capture.tracin)
    r_fast, r_slow = fast.results()[0], slow.results()[0]
    assert np.allclose(r_fast.mu, r_slow.mu)
    assert r_fast.method.startswith("fine[across-run")


def test_paper_capture_with_noise_equals_step_by_step(problem):
    rec, X, y, Xt, yt, cands = problem
    rec = rec.with_(grad_noise=0.05)
    fast = run_fine(rec, X, y, Xt, yt, cands, "paper", seeds=[0, 1])
    slow = run_fine(rec, X, y, Xt, yt, cands, "paper", seeds=[0, 1], fast=False)
    p_fast, q_fast = fast.capture.acc.signals()
    p_slow, q_slow, _ = slow.capture.acc.signals()
    assert np.allclose(p_fast, p_slow, atol=1e-6) and np.allclose(q_fast, q_slow, atol=1e-6)


def _leave_out_difference(rec, X, y, Xt, yt, cands, seed, fraction=1.0):
    """Exact change of the final target loss when each candidate's weight drops by
    ``fraction`` (1: left out), per unit of ``fraction``, same seed (the engine's weight
    columns share the replica's batch order)."""
    from simulations.baselines import target_value
    from simulations.engine import train

    W = np.ones((1 + len(cands), len(y)))
    W[1 + np.arange(len(cands)), cands] = 1.0 - fraction
    params = train(rec, X, y, W, seeds=[seed])
    value = target_value(rec.model, params, design_matrix(Xt, True), yt, "loss")[0]
    return (value[1:] - value[0]) / fraction


@pytest.mark.parametrize("model", ["multinomial", "logistic", "ridge"])
def test_adjoint_effect_is_the_first_order_leave_out_difference(problem, model):
    """discount='adjoint' with the realised effect is the derivative of the same-seed
    final target in the candidate's weight: its error against a removal of a fraction eps
    shrinks like eps (first order), and for a full removal it is far closer than the scalar
    contraction."""
    _, X, y, Xt, yt, cands = problem
    if model != "multinomial":
        y = (y == 1).astype(float) if model == "ridge" else (y == 1).astype(int)
        yt = np.array([1])
    rec = Recipe(model=model, epochs=8, batch_size=16, schedule=Schedule(lr=0.2), l2=1e-3)
    adj = run_fine(rec, X, y, Xt, yt, cands, fine_config("calibrated-realised",
                                                         discount="adjoint"), seeds=[3])
    a = adj.capture.adjoint_effect[0, 0]                         # replica 0 = the run

    def error(reference):
        return np.linalg.norm(a - reference) / np.linalg.norm(reference)

    full = error(_leave_out_difference(rec, X, y, Xt, yt, cands, 3))
    small = error(_leave_out_difference(rec, X, y, Xt, yt, cands, 3, fraction=0.01))
    assert full < 0.1 and small < 2e-3 and small < 0.05 * full, (full, small)
    con = run_fine(rec, X, y, Xt, yt, cands, "calibrated-realised", seeds=[3])
    exact = _leave_out_difference(rec, X, y, Xt, yt, cands, 3)
    con_err = np.linalg.norm(con.capture.acc.effect_sum()[0, 0] - exact) / np.linalg.norm(exact)
    assert full < 0.5 * con_err, (full, con_err)
    res = adj.results()[0]
    assert np.allclose(res.mu * adj.capture.spread()[0][0], a)
    assert np.all(res.ci_low <= res.mu) and np.all(res.mu <= res.ci_high)


def test_adjoint_needs_spread_scaling_and_the_fast_path(problem):
    from finf_stats.fine import FineError

    rec, X, y, Xt, yt, cands = problem
    with pytest.raises(FineError, match="adjoint"):
        fine_config("paper", discount="adjoint")
    cfg = fine_config("calibrated", discount="adjoint")
    with pytest.raises(FineError, match="adjoint"):
        run_fine(rec, X, y, Xt, yt, [cands[:2], cands[2:4]], cfg, seeds=[0])


def test_tracin_by_product_of_adjoint_only_when_asked(problem):
    from simulations.capture import FineCapture
    from simulations.engine import train

    rec, X, y, Xt, yt, cands = problem
    seeds = [0, 1]
    caps = [FineCapture(design_matrix(Xt, True), yt, cands, p, n_runs=1, tracin=t)
            for p, t in (("adjoint", None), ("adjoint", True), ("paper", None))]
    train(rec, X, y, seeds=seeds, observers=caps)
    assert caps[0].tracin is None                        # not free for adjoint: skipped
    assert np.allclose(caps[1].tracin, caps[2].tracin)   # asked: the same TracIn
    assert np.allclose(caps[0].adjoint_effect, caps[1].adjoint_effect)
