"""Multiple-testing control for flagging influential candidates among many."""

from __future__ import annotations

import numpy as np
from statsmodels.stats.multitest import multipletests

#: accepted names -> statsmodels method names
METHODS = {"holm": "holm", "fdr_bh": "fdr_bh", "bh": "fdr_bh", "benjamini-hochberg": "fdr_bh",
           "bonferroni": "bonferroni"}


def adjusted_p_values(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values (Holm's step-down or Benjamini–Hochberg's step-up)."""
    p = _check_p_values(p_values)
    return multipletests(p, method=_method(method))[1]


def reject_flags(p_values: np.ndarray, method: str = "holm", level: float = 0.05) -> np.ndarray:
    """Boolean flags: which null hypotheses ``mu = 0`` are rejected at ``level``.

    ``holm`` controls the family-wise error rate; ``fdr_bh`` the false-discovery rate
    (valid for independent or positively dependent tests).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    p = _check_p_values(p_values)
    return multipletests(p, alpha=level, method=_method(method))[0]


def _method(method: str) -> str:
    try:
        return METHODS[method.lower()]
    except KeyError:
        raise ValueError(f"unknown multiple-testing method {method!r}; choose one of "
                         f"{sorted(METHODS)}") from None


def _check_p_values(p_values: np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("no p-values given")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be finite and lie in [0, 1]")
    return p
