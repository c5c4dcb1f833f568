"""Baselines (simulations.baselines): ghost products, exact Hessian IF, TracIn, TRAK, LOO."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from simulations import baselines as bl
from simulations.engine import design_matrix, train
from simulations.recipes import Recipe, Schedule


def _data(model: str, n: int = 40, d: int = 4, K: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = design_matrix(rng.standard_normal((n, d)), True)
    if model == "multinomial":
        y = rng.integers(0, K, n)
        theta = rng.standard_normal((d + 1, K))
    elif model == "logistic":
        y = rng.integers(0, 2, n)
        theta = rng.standard_normal((d + 1, 1))
    else:
        y = rng.standard_normal(n)
        theta = rng.standard_normal((d + 1, 1))
    return X, y, theta


@pytest.mark.parametrize("model", ["linear", "logistic", "multinomial"])
def test_ghost_equals_explicit(model):
    X, y, theta = _data(model)
    G = bl.per_example_gradients(model, theta, X, y)            # (n, p, K)
    explicit = np.einsum("ipk,jpk->ij", G[:7], G)
    R = bl.residuals(model, theta, X, y)
    ghost = bl.ghost_dot(X[:7], R[:7], X, R)
    assert np.allclose(ghost, explicit, rtol=1e-12, atol=1e-12)
    # target gradient = mean of explicit per-example gradients
    assert np.allclose(bl.target_gradient(model, theta, X[:5], y[:5]), G[:5].mean(axis=0))


@pytest.mark.parametrize("model", ["logistic", "multinomial"])
def test_hessian_matches_finite_differences(model):
    X, y, theta = _data(model, n=25)
    w = np.linspace(0.5, 1.5, X.shape[0])
    l2 = 0.1

    def grad(flat):
        th = flat.reshape(theta.shape)
        g = np.einsum("i,ipk->pk", w, bl.per_example_gradients(model, th, X, y)) / X.shape[0]
        g[:-1] += l2 * th[:-1]
        return g.reshape(-1)

    H = bl.hessian(model, theta, X, y, w, l2)
    eps = 1e-6
    num = np.stack([(grad(theta.reshape(-1) + eps * e) - grad(theta.reshape(-1) - eps * e))
                    / (2 * eps) for e in np.eye(theta.size)], axis=1)
    assert np.allclose(H, num, atol=1e-6)


def _fit_logistic(X, y, w, l2):
    def f(flat):
        z = X @ flat
        loss = np.logaddexp(0, z) - y * z
        reg = 0.5 * l2 * np.sum(flat[:-1] ** 2)
        s = 0.5 * (1 + np.tanh(0.5 * z))
        g = X.T @ (w * (s - y)) / len(y)
        g[:-1] += l2 * flat[:-1]
        return np.sum(w * loss) / len(y) + reg, g
    out = optimize.minimize(f, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000})
    return out.x[:, None]


def test_influence_function_matches_retraining_logistic():
    """At the optimum, IF = the first-order effect of removing z on the target loss."""
    X, y, _ = _data("logistic", n=200, d=3, seed=4)
    l2 = 0.05
    w = np.ones(len(y))
    theta = _fit_logistic(X, y, w, l2)
    Xt, yt = X[:1] * 0 + np.array([[0.5, -1.0, 0.3, 1.0]]), np.array([1])

    def target(th):
        z = Xt @ th
        return float(np.mean(np.logaddexp(0, z[:, 0]) - yt * z[:, 0]))

    cands = np.arange(12)
    A = bl.candidate_weights(cands, len(y))
    inf = bl.influence_function("logistic", theta, X, y, Xt, yt, A, l2=l2)
    exact = []
    for i in cands:
        wi = w.copy()
        wi[i] = 0.0
        exact.append(target(_fit_logistic(X, y, wi, l2)) - target(theta))
    exact = np.array(exact)
    assert np.corrcoef(inf, exact)[0, 1] > 0.99
    assert np.allclose(inf, exact, rtol=0.1, atol=0.05 * np.abs(exact).max())


def test_trak_equals_if_for_least_squares():
    """Linear regression, no projection, no damping: TRAK's formula is the IF removal effect."""
    X, y, _ = _data("linear", n=60, d=3, seed=2)
    theta = np.linalg.lstsq(X, y, rcond=None)[0][:, None]
    Xt, yt = X[:2] + 0.1, y[:2] + 0.5
    A = bl.candidate_weights(np.arange(20), len(y))
    inf = bl.influence_function("linear", theta, X, y, Xt, yt, A)
    trak = bl.trak_scores("linear", theta, X, y, Xt, yt, A, proj_dim=10_000, damping=0.0)
    assert np.allclose(trak, inf, rtol=1e-8, atol=1e-12)


def test_trak_projection_seed_and_dim_are_used():
    X, y, theta = _data("multinomial", n=80, d=6, K=4)
    Xt, yt = X[:3], y[:3]
    A = bl.candidate_weights(np.arange(30), len(y))
    a = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, proj_dim=8, seed=0)
    b = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, proj_dim=8, seed=1)
    c = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, proj_dim=8, seed=0)
    full = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, proj_dim=10_000)
    assert np.array_equal(a, c) and not np.allclose(a, b)
    assert not np.allclose(a, full)
    ens = bl.trak_scores("multinomial", np.stack([theta, 2 * theta]), X, y, Xt, yt, A,
                        proj_dim=8, seed=0)
    two = bl.trak_scores("multinomial", 2 * theta, X, y, Xt, yt, A, proj_dim=8, seed=0)
    assert np.allclose(ens, (a + two) / 2)


class _ExplicitTracIn:
    """TracIn from explicit per-example gradients (the test's reference)."""

    def __init__(self, Xt, yt, cands):
        self.Xt, self.yt, self.cands = Xt, yt, cands

    def on_start(self, ctx):
        self.X, self.y, self.model = ctx.features, ctx.labels, ctx.recipe.model
        self.w = ctx.weights
        self.score = np.zeros((ctx.shape[0], ctx.shape[1], len(self.cands)))

    def on_step(self, info):
        for r in range(info.params.shape[0]):
            for c in range(info.params.shape[1]):
                th = np.array(info.params[r, c])
                g = bl.target_gradient(self.model, th, self.Xt, self.yt)
                for s, i in enumerate(self.cands):
                    if i in info.batch_indices[r]:
                        gi = bl.per_example_gradients(self.model, th, self.X[i:i + 1],
                                                     self.y[i:i + 1])[0]
                        self.score[r, c, s] += (info.lr * self.w[c, i] * np.sum(g * gi)
                                                / info.denominator)


def test_tracin_observer_matches_explicit_gradients():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    y = rng.integers(0, 3, 30)
    recipe = Recipe(model="multinomial", epochs=3, batch_size=7,
                    schedule=Schedule(lr=0.3), l2=0.01)
    Xt = design_matrix(rng.standard_normal((2, 3)), True)
    yt = np.array([0, 2])
    cands = np.array([0, 5, 11, 29])
    weights = np.ones((2, 30))
    weights[1, 5] = 0.0
    obs = bl.TracInObserver(Xt, yt, bl.candidate_weights(cands, 30), every_k=2)
    ref = _ExplicitTracIn(Xt, yt, cands)
    train(recipe, X, y, weights, seeds=[0, 1], observers=[obs, ref])
    assert np.allclose(obs.tracin, ref.score, rtol=1e-10, atol=1e-14)
    assert np.all(obs.tracin[:, 1, 1] == 0)           # weight 0 in column 1: no contribution
    assert np.any(obs.tracin_cp != 0)


def test_loo_mean_sign():
    with_s = np.zeros(10)
    without = np.array([np.full(10, 1.0), np.full(10, -2.0)])
    assert np.allclose(bl.loo_mean(with_s, without), [1.0, -2.0])


def test_candidate_weights_refuses_bad_indices():
    with pytest.raises(ValueError, match="out-of-range"):
        bl.candidate_weights(np.array([5]), 3)


def test_trak_exact_default_and_target_output():
    """proj_dim=None is the exact-feature TRAK; the loss target scales a single target point's
    margin score by its Q weight 1 - p_y (so the ranking of one test point is unchanged)."""
    X, y, theta = _data("multinomial")
    A = bl.candidate_weights(np.arange(10), X.shape[0])
    Xt, yt = X[:1], y[:1]
    exact = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A)
    assert np.allclose(exact, bl.trak_scores("multinomial", theta, X, y, Xt, yt, A,
                                             proj_dim=10_000))
    loss = bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, target_output="loss")
    z = Xt @ theta
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert np.allclose(loss, (1 - p[0, yt[0]]) * exact)
    with pytest.raises(ValueError, match="target_output"):
        bl.trak_scores("multinomial", theta, X, y, Xt, yt, A, target_output="x")
