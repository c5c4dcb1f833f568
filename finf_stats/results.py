"""Result objects: a signed influence ``mu`` with its interval, p-value, method and sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from finf_stats.multiple_testing import reject_flags

#: the scalar fields every result carries, in export order
RESULT_FIELDS = ("mu", "ci_low", "ci_high", "p_value", "method", "n_with", "n_without",
                 "confidence", "probit_slope", "max_gap")


@dataclass(frozen=True)
class InfluenceResult:
    """The Gaussian influence of one subset S on one target.

    Attributes
    ----------
    mu
        Signed Gaussian influence. ``mu > 0``: removing S raises the target loss (S helps the
        target); ``mu < 0``: S hurts it. ``+-inf`` when the samples are perfectly separated.
    ci_low, ci_high
        Two-sided confidence interval at level ``confidence`` (one side is infinite when the
        samples are separated).
    p_value
        Two-sided p-value of the test of ``mu = 0`` (no influence: P = Q).
    method
        The estimator (``threshold-max``, ``binormal``, ``auc``, ``probit``).
    n_with, n_without
        Sample sizes under H0 (trained on D) and H1 (trained on D \\ S).
    probit_slope
        Slope of the probit ROC (``Phi^{-1}(beta)`` against ``Phi^{-1}(1 - alpha)``) over the
        central thresholds; 1 for an equal-variance Gaussian trade-off. NaN only when fewer
        than two central thresholds exist (tiny or separated samples).
    max_gap
        Largest vertical gap between the empirical fixed-direction curve and
        ``Phi(Phi^{-1}(1 - alpha) - mu)``: how far the data are from ``G_mu``.
    """

    mu: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    n_with: int
    n_without: int
    confidence: float = 0.95
    probit_slope: float = float("nan")
    max_gap: float = float("nan")

    @property
    def significant(self) -> bool:
        """``True`` when the interval excludes 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return (f"mu = {self.mu:+.3f}  [{pct}% CI {self.ci_low:+.3f}, {self.ci_high:+.3f}]  "
                f"p = {self.p_value:.3g}  ({self.method}, n_with={self.n_with}, "
                f"n_without={self.n_without}; probit slope {self.probit_slope:.2f}, "
                f"max gap to G_mu {self.max_gap:.3f})")


@dataclass(frozen=True)
class InfluenceResults:
    """Influence estimates for many candidates at once (arrays of equal length).

    Index it to get one :class:`InfluenceResult`; export with :meth:`to_pandas`; flag
    candidates under multiple-testing control with :meth:`flags`.
    """

    mu: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    method: str
    n_with: np.ndarray
    n_without: np.ndarray
    confidence: float = 0.95
    probit_slope: np.ndarray = field(default_factory=lambda: np.array([]))
    max_gap: np.ndarray = field(default_factory=lambda: np.array([]))
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.mu).shape[0]
        for name in ("ci_low", "ci_high", "p_value", "n_with", "n_without", "probit_slope",
                     "max_gap"):
            if np.asarray(getattr(self, name)).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} entries for {n} candidates")

    def __len__(self) -> int:
        return int(np.asarray(self.mu).shape[0])

    def __getitem__(self, i: int) -> InfluenceResult:
        return InfluenceResult(
            mu=float(self.mu[i]), ci_low=float(self.ci_low[i]), ci_high=float(self.ci_high[i]),
            p_value=float(self.p_value[i]), method=self.method, n_with=int(self.n_with[i]),
            n_without=int(self.n_without[i]), confidence=self.confidence,
            probit_slope=float(self.probit_slope[i]), max_gap=float(self.max_gap[i]),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def with_labels(self, labels: list[str] | tuple[str, ...]) -> InfluenceResults:
        """The same results with candidate labels (used by figures and exports)."""
        return InfluenceResults(**{**self.__dict__, "labels": tuple(str(x) for x in labels)})

    def flags(self, method: str = "holm", level: float = 0.05) -> np.ndarray:
        """Candidates whose ``mu = 0`` is rejected under multiple-testing control.

        ``method``: ``"holm"`` (family-wise error) or ``"fdr_bh"`` (Benjamini–Hochberg
        false-discovery rate), as in :func:`statsmodels.stats.multitest.multipletests`.
        """
        return reject_flags(self.p_value, method=method, level=level)

    def to_pandas(self):
        """A DataFrame with one row per candidate and the columns of :data:`RESULT_FIELDS`."""
        import pandas as pd

        frame = pd.DataFrame({
            "mu": self.mu, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "p_value": self.p_value, "method": self.method, "n_with": self.n_with,
            "n_without": self.n_without, "confidence": self.confidence,
            "probit_slope": self.probit_slope, "max_gap": self.max_gap,
        })
        if self.labels is not None:
            frame.insert(0, "candidate", list(self.labels))
        return frame
