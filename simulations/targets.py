"""Target statistics ``ℓ`` of a trained model, evaluated for every model of a grid at once.

========================= ==========================================================
``Target`` (text form)    value for a model :math:`\\theta`
========================= ==========================================================
``test-loss:i``           loss of test point ``i``
``test-set-loss``         mean loss over the test set
``self-loss``             mean loss of the candidate's own training points ``S``
``prediction:i[:k]``      linear predictor :math:`z_k = x_i^\\top\\theta_{:,k}` at test point
                          ``i`` (output ``k``, default 0)
========================= ==========================================================

Lower is "better" for losses; the sign convention of the project (``mu > 0``: removing S
raises ℓ) applies to every target, predictions included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from simulations.data import Dataset
from simulations.engine import design_matrix
from simulations.models import loss
from simulations.recipes import Recipe

KINDS = ("test-loss", "test-set-loss", "self-loss", "prediction")


class TargetError(ValueError):
    """A target that cannot be evaluated on this data."""


@dataclass(frozen=True)
class Target:
    """One target statistic (see the module docstring)."""

    kind: str
    index: int | None = None
    output: int = 0

    @property
    def label(self) -> str:
        if self.kind in ("test-set-loss", "self-loss"):
            return self.kind
        if self.kind == "prediction" and self.output:
            return f"prediction:{self.index}:{self.output}"
        return f"{self.kind}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, data: Dataset, K: int) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target {self.kind!r}; use one of {KINDS}")
        if self.kind in ("test-loss", "prediction"):
            m = data.X_test.shape[0]
            if self.index is None or not 0 <= self.index < m:
                raise TargetError(f"target {self.label}: test index out of range [0, {m})")
        if self.kind == "prediction" and not 0 <= self.output < K:
            raise TargetError(f"target {self.label}: output out of range [0, {K})")


def parse_target(text: str) -> Target:
    """Parse ``test-loss:3``, ``test-set-loss``, ``self-loss``, ``prediction:3:1``."""
    parts = text.strip().split(":")
    kind = parts[0]
    if kind not in KINDS:
        raise TargetError(f"unknown target {text!r}; use one of {KINDS}")
    try:
        nums = [int(p) for p in parts[1:]]
    except ValueError:
        raise TargetError(f"target {text!r}: indices must be integers") from None
    if kind in ("test-set-loss", "self-loss"):
        if nums:
            raise TargetError(f"target {kind} takes no index")
        return Target(kind)
    if not nums or len(nums) > (2 if kind == "prediction" else 1):
        raise TargetError(f"target {text!r}: give {kind}:INDEX"
                          + ("[:OUTPUT]" if kind == "prediction" else ""))
    return Target(kind, nums[0], nums[1] if len(nums) > 1 else 0)


def evaluate(target: Target, recipe: Recipe, data: Dataset, params: np.ndarray,
             groups: list[np.ndarray]) -> np.ndarray:
    """Value of ``target`` for models ``params (R, C, p, K)``.

    For ``self-loss`` column ``c`` is evaluated on ``groups[c]`` (so ``len(groups) == C``;
    pass the same group for every column to evaluate one group under several models).
    Returns shape ``(R, C)``.
    """
    R, C, p, K = params.shape
    if target.kind == "self-loss":
        if len(groups) != C:
            raise TargetError("self-loss needs one group per model column")
        Xa = design_matrix(data.X, recipe.fit_intercept)
        out = np.empty((R, C))
        for c, g in enumerate(groups):
            z = np.matmul(Xa[g], params[:, c])  # (R, |g|, K)
            out[:, c] = loss(recipe.model, z, data.y[g]).mean(axis=1)
        return out
    Xt = design_matrix(data.X_test, recipe.fit_intercept)
    if target.kind == "test-set-loss":
        z = np.matmul(Xt, params)  # (R, C, m, K)
        return loss(recipe.model, z, data.y_test).mean(axis=-1)
    x = Xt[target.index]
    z = np.einsum("p,rcpk->rck", x, params)
    if target.kind == "prediction":
        return z[..., target.output]
    return loss(recipe.model, z, np.asarray(data.y_test[target.index]))
