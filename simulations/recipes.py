"""Training recipes: everything that defines the randomised training algorithm ``A``.

A :class:`Recipe` is a frozen, typed, JSON-serialisable dataclass. Together with the data, the
per-example weights and one integer seed, it fixes a training run completely:

* the model family (``linear``/``ridge`` regression with squared loss, binary ``logistic``
  regression, ``multinomial`` logistic regression), an optional intercept and the L2 strength
  :math:`\\lambda` (never applied to the intercept);
* minibatch SGD: batch size ``b`` (``None`` = full batch), epochs, the learning-rate schedule
  :math:`\\eta_t` (:class:`Schedule`: constant, step, cosine);
* the initialisation law (:class:`InitLaw`) and optional Gaussian gradient noise of standard
  deviation :math:`\\sigma` (noisy SGD / noisy gradient descent).

What a seed controls (see :func:`seed_streams`): three independent streams derived from the
seed with :class:`numpy.random.SeedSequence`: the initial parameters, the permutation of the
training set drawn at the start of every epoch, and the gradient noise (one block of shape
``(steps_in_epoch, p, K)`` drawn per epoch, after the permutation).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

ModelFamily = Literal["linear", "ridge", "logistic", "multinomial"]
MODEL_FAMILIES: tuple[str, ...] = ("linear", "ridge", "logistic", "multinomial")


class RecipeError(ValueError):
    """A recipe that cannot be trained (bad field values)."""


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule :math:`\\eta_t` over the global step ``t = 0, ..., T-1``.

    * ``constant``: :math:`\\eta_t = \\eta_0`;
    * ``step``: :math:`\\eta_t = \\eta_0\\,\\gamma^{\\lfloor e(t) / s\\rfloor}` with ``e(t)`` the
      epoch of step ``t``, ``s = step_epochs`` and ``gamma = gamma``;
    * ``cosine``: :math:`\\eta_t = \\eta_{min} + \\tfrac12(\\eta_0 - \\eta_{min})
      (1 + \\cos(\\pi t / T))`.
    """

    kind: Literal["constant", "step", "cosine"] = "constant"
    lr: float = 0.1
    gamma: float = 0.1
    step_epochs: int = 10
    min_lr: float = 0.0

    def validate(self) -> None:
        if self.kind not in ("constant", "step", "cosine"):
            raise RecipeError(f"unknown learning-rate schedule {self.kind!r}; "
                              "use 'constant', 'step' or 'cosine'")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise RecipeError(f"learning rate must be a positive number, got {self.lr!r}")
        if self.kind == "step" and (self.step_epochs < 1 or not self.gamma > 0):
            raise RecipeError("step schedule needs step_epochs >= 1 and gamma > 0")

    def lrs(self, steps_per_epoch: int, epochs: int) -> np.ndarray:
        """The learning rate of every global step, shape ``(epochs * steps_per_epoch,)``."""
        total = steps_per_epoch * epochs
        t = np.arange(total)
        if self.kind == "constant":
            return np.full(total, float(self.lr))
        if self.kind == "step":
            return self.lr * self.gamma ** ((t // steps_per_epoch) // self.step_epochs)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + np.cos(np.pi * t / total))


@dataclass(frozen=True)
class InitLaw:
    """Law of the initial parameters: ``zeros`` or i.i.d. ``normal`` N(0, scale²) or
    ``uniform`` U(-scale, scale) on every weight (the intercept starts at 0)."""

    kind: Literal["zeros", "normal", "uniform"] = "normal"
    scale: float = 0.01

    def validate(self) -> None:
        if self.kind not in ("zeros", "normal", "uniform"):
            raise RecipeError(f"unknown initialisation {self.kind!r}; "
                              "use 'zeros', 'normal' or 'uniform'")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise RecipeError(f"init scale must be >= 0, got {self.scale!r}")


@dataclass(frozen=True)
class Recipe:
    """A training recipe (see the module docstring for the exact semantics).

    Parameters
    ----------
    model
        ``"linear"``, ``"ridge"`` (squared loss :math:`\\tfrac12(x^\\top\\theta - y)^2`; ridge is
        the same loss and simply expects ``l2 > 0``), ``"logistic"`` (labels in {0, 1}) or
        ``"multinomial"`` (labels in {0, ..., K-1}).
    epochs
        Passes over the training set.
    batch_size
        Minibatch size ``b``; ``None`` (or ``b >= n``) means full-batch gradient descent.
    schedule, init
        See :class:`Schedule` and :class:`InitLaw`.
    l2
        L2 strength :math:`\\lambda`; the objective of a batch ``B`` is
        :math:`\\frac{1}{|B|}\\sum_{i\\in B} w_i\\,\\mathrm{loss}_i(\\theta) +
        \\frac{\\lambda}{2}\\lVert\\theta\\rVert^2`, where ``|B|`` counts the batch's slots
        (``b`` for full batches, the remainder for the last one), never the weights.
    grad_noise
        Standard deviation :math:`\\sigma` of Gaussian noise added to every gradient.
    fit_intercept
        Append a constant-one feature (its weight is not penalised).
    n_classes
        ``K`` for ``multinomial`` (``None``: inferred from the labels); 1 otherwise.
    name
        A label used in error messages and reports.
    """

    model: ModelFamily = "multinomial"
    epochs: int = 10
    batch_size: int | None = 32
    schedule: Schedule = field(default_factory=Schedule)
    init: InitLaw = field(default_factory=InitLaw)
    l2: float = 1e-3
    grad_noise: float = 0.0
    fit_intercept: bool = True
    n_classes: int | None = None
    name: str = "recipe"

    def validate(self) -> None:
        """Raise :class:`RecipeError` naming the first bad field."""
        if self.model not in MODEL_FAMILIES:
            raise RecipeError(f"recipe {self.name!r}: unknown model {self.model!r}; "
                              f"use one of {MODEL_FAMILIES}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise RecipeError(f"recipe {self.name!r}: epochs must be an integer >= 1")
        if self.batch_size is not None and (int(self.batch_size) != self.batch_size
                                            or self.batch_size < 1):
            raise RecipeError(f"recipe {self.name!r}: batch_size must be >= 1 or None")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise RecipeError(f"recipe {self.name!r}: l2 must be >= 0")
        if not (math.isfinite(self.grad_noise) and self.grad_noise >= 0):
            raise RecipeError(f"recipe {self.name!r}: grad_noise must be >= 0")
        if self.n_classes is not None and self.n_classes < 2:
            raise RecipeError(f"recipe {self.name!r}: n_classes must be >= 2")
        self.schedule.validate()
        self.init.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise RecipeError(f"unknown recipe fields {sorted(unknown)}")
        if isinstance(d.get("schedule"), dict):
            d["schedule"] = Schedule(**d["schedule"])
        if isinstance(d.get("init"), dict):
            d["init"] = InitLaw(**d["init"])
        recipe = cls(**d)
        recipe.validate()
        return recipe

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls.from_dict(json.loads(text))

    def with_(self, **changes: Any) -> Recipe:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def n_outputs(self, y: np.ndarray) -> int:
        """``K``: the number of output columns of the parameter matrix."""
        if self.model != "multinomial":
            return 1
        if self.n_classes is not None:
            return int(self.n_classes)
        return int(np.max(y)) + 1

    def steps_per_epoch(self, n: int) -> int:
        b = n if self.batch_size is None else min(int(self.batch_size), n)
        return -(-n // b)

    def batch_bounds(self, n: int) -> list[tuple[int, int]]:
        """Slices ``[start, stop)`` of the epoch's permutation that make its batches."""
        b = n if self.batch_size is None else min(int(self.batch_size), n)
        return [(s, min(s + b, n)) for s in range(0, n, b)]


def seed_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator,
                                     np.random.Generator]:
    """The three generators a seed controls: ``(init, permutation, noise)``.

    Each is ``numpy.random.default_rng(SeedSequence([seed, k]))`` with ``k = 0, 1, 2``, so the
    streams are independent and a run is reproducible from its integer seed alone.
    """
    seed = int(seed)
    if seed < 0:
        raise RecipeError(f"seeds must be non-negative integers, got {seed}")
    return tuple(np.random.default_rng(np.random.SeedSequence([seed, k]))  # type: ignore[return-value]
                 for k in range(3))


def draw_init(init: InitLaw, rng: np.random.Generator, shape: tuple[int, int],
              fit_intercept: bool) -> np.ndarray:
    """Initial parameters of shape ``(p, K)`` (the intercept row, the last, starts at 0)."""
    if init.kind == "zeros" or init.scale == 0:
        theta = np.zeros(shape)
    elif init.kind == "normal":
        theta = init.scale * rng.standard_normal(shape)
    else:
        theta = rng.uniform(-init.scale, init.scale, size=shape)
    if fit_intercept:
        theta[-1] = 0.0
    return theta
