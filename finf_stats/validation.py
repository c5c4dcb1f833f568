"""Input checks shared by every estimator: clear errors instead of deep numpy tracebacks."""

from __future__ import annotations

import numpy as np


class SampleError(ValueError):
    """Raised when a sample cannot be used (wrong shape, NaN/inf, too few values)."""


def as_sample(values: object, name: str, min_size: int = 2) -> np.ndarray:
    """Return ``values`` as a finite 1-D float array of at least ``min_size`` elements.

    Raises
    ------
    SampleError
        Naming ``name`` and what is wrong: not numeric, not 1-D, too short, NaN or inf.
    """
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise SampleError(f"{name} must be numeric: {err}") from None
    if arr.ndim != 1:
        raise SampleError(f"{name} must be 1-D, got shape {arr.shape}")
    _check_finite_and_size(arr, name, min_size)
    return arr


def as_batch(values: object, name: str, min_size: int = 2) -> np.ndarray:
    """Return ``values`` as a finite 2-D array (candidates x samples).

    A 1-D input becomes one row.
    """
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise SampleError(f"{name} must be numeric: {err}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SampleError(f"{name} must be 1-D (samples) or 2-D (candidates x samples), "
                          f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise SampleError(f"{name} has no candidates (shape {arr.shape})")
    _check_finite_and_size(arr, name, min_size)
    return arr


def _check_finite_and_size(arr: np.ndarray, name: str, min_size: int) -> None:
    n = arr.shape[-1]
    if n == 0:
        raise SampleError(f"{name} is empty")
    if n < min_size:
        raise SampleError(f"{name} has {n} value(s) per candidate; at least {min_size} are needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[tuple(where)]) else "inf"
        raise SampleError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (first: {kind} at index "
            f"{tuple(int(i) for i in where)}); remove or impute them before estimating"
        )


def check_confidence(confidence: float) -> float:
    """Validate a confidence level in (0, 1)."""
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return c
