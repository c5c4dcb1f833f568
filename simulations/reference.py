"""The one-model-at-a-time reference implementation of a recipe.

Plain, readable SGD for a single seed and a single weighting of the training set, with
exactly the semantics of :mod:`simulations.engine` (same random streams, same batch
normalisation, same update). It exists only so the batched engine can be tested against it:
for the same seed and weights both give the same final parameters to rounding. It is never
used to produce results.
"""

from __future__ import annotations

import numpy as np

from simulations.engine import DivergenceError, check_inputs, design_matrix
from simulations.models import loss_and_residual
from simulations.recipes import Recipe, draw_init, seed_streams


def train_reference(recipe: Recipe, X: np.ndarray, y: np.ndarray,
                    weights: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Train one model; returns its final parameters ``(p, K)``.

    For every epoch: draw a permutation of ``range(n)``, then (if ``grad_noise > 0``) the
    noise block ``(steps_per_epoch, p, K)``; for every batch ``B`` of the permutation,

    .. math::

        \\theta \\leftarrow \\theta - \\eta_t\\Big(\\frac{1}{|B|}\\sum_{i\\in B} w_i\\,x_i r_i^\\top
        + \\lambda\\theta_{\\mathrm{w}} + \\sigma\\xi_t\\Big).
    """
    X, y, w2, _, K = check_inputs(recipe, X, y, weights, [seed])
    w = w2[0]
    Xa = design_matrix(X, recipe.fit_intercept)
    n, p = Xa.shape
    init_rng, perm_rng, noise_rng = seed_streams(seed)
    theta = draw_init(recipe.init, init_rng, (p, K), recipe.fit_intercept)
    bounds = recipe.batch_bounds(n)
    lrs = recipe.schedule.lrs(len(bounds), recipe.epochs)
    reg = np.ones((p, 1))
    if recipe.fit_intercept:
        reg[-1] = 0.0
    step = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(recipe.epochs):
            perm = perm_rng.permutation(n)
            noise = (noise_rng.standard_normal((len(bounds), p, K))
                     if recipe.grad_noise > 0 else None)
            for j, (s, e) in enumerate(bounds):
                idx = perm[s:e]
                xb, yb, wb = Xa[idx], y[idx], w[idx]
                loss, r = loss_and_residual(recipe.model, xb @ theta, yb)
                batch_loss = float(np.sum(wb * loss)) / len(idx)
                if not np.isfinite(batch_loss):
                    raise DivergenceError(
                        f"recipe {recipe.name!r} diverged: the loss became NaN/inf at step "
                        f"{step} (epoch {epoch}) for seed {seed}")
                grad = xb.T @ (r * wb[:, None]) / len(idx) + recipe.l2 * reg * theta
                if noise is not None:
                    grad = grad + recipe.grad_noise * noise[j]
                theta = theta - lrs[step] * grad
                step += 1
    return theta
