"""Metrics every study uses: consistency across runs, detection, agreement with the truth.

``scores_by_run`` arrays are ``(runs, candidates)``: row ``r`` holds one method's scores of
every candidate in training run ``r``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from finf_stats.validation import SampleError, check_confidence


def _scores_by_run(scores_by_run: object) -> np.ndarray:
    s = np.asarray(scores_by_run, dtype=float)
    if s.ndim != 2:
        raise SampleError(f"scores_by_run must be 2-D (runs x candidates), got shape {s.shape}")
    if s.shape[0] < 2:
        raise SampleError(f"consistency needs at least 2 runs, got {s.shape[0]}")
    if s.shape[1] < 2:
        raise SampleError(f"need at least 2 candidates, got {s.shape[1]}")
    if np.isnan(s).any():
        raise SampleError("scores_by_run contains NaN")
    return s


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores (ties broken by index, deterministically)."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:k]


def topk_jaccard(scores_by_run: object, k: int | None = None, fraction: float = 0.1
                 ) -> dict[str, float]:
    """Mean Jaccard index of the top-``k`` sets over all pairs of runs.

    ``J(A, B) = |A ∩ B| / |A ∪ B|``; ``k`` defaults to ``fraction`` of the candidates (at
    least 1). Returns the mean, its standard deviation over pairs and the number of pairs.
    The paper reports this mean (IF 0.567, TracIn 0.564, TRAK 0.736, f-INE 0.938).
    """
    s = _scores_by_run(scores_by_run)
    n = s.shape[1]
    if k is None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        k = max(1, int(round(fraction * n)))
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}], got {k}")
    sets = [set(top_k(row, k).tolist()) for row in s]
    values = np.array([len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)])
    return {"mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "pairs": int(values.size), "k": int(k)}


def coefficient_of_variation(scores_by_run: object) -> dict[str, float]:
    """Across-run coefficient of variation of each candidate's score, summarised.

    ``CV_j = sd_r(s_rj) / |mean_r(s_rj)|``; candidates whose mean score is 0 are left out
    (their CV is undefined). Returns the median and mean CV over candidates and the count.
    Scale-free, so methods with different units compare.
    """
    s = _scores_by_run(scores_by_run)
    mean = s.mean(0)
    sd = s.std(0, ddof=1)
    ok = np.isfinite(mean) & np.isfinite(sd) & (np.abs(mean) > 0)
    if not ok.any():
        raise SampleError("every candidate has mean score 0 or a non-finite score; the "
                          "coefficient of variation is undefined")
    cv = sd[ok] / np.abs(mean[ok])
    return {"median": float(np.median(cv)), "mean": float(np.mean(cv)),
            "candidates": int(ok.sum())}


def _labels(scores: object, is_positive: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(is_positive).ravel().astype(bool)
    if s.shape != y.shape:
        raise SampleError(f"scores ({s.size}) and is_positive ({y.size}) differ in length")
    if s.size == 0:
        raise SampleError("no scores given")
    if np.isnan(s).any():
        raise SampleError("scores contain NaN")
    return s, y


def recall_at_fraction(scores: object, is_positive: object, fraction: float) -> float:
    """Fraction of positives found among the top ``fraction`` of candidates by score.

    Used for mislabel and poison detection: inspect the highest-scored ``ceil(fraction n)``
    candidates, count the positives found, divide by the number of positives.
    """
    s, y = _labels(scores, is_positive)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if not y.any():
        raise SampleError("there are no positives; recall is undefined")
    k = int(np.ceil(fraction * s.size))
    return float(y[top_k(s, k)].sum() / y.sum())


def auc_score(scores: object, is_positive: object) -> float:
    """Area under the ROC curve of ``scores`` for separating positives (scikit-learn)."""
    s, y = _labels(scores, is_positive)
    if y.all() or not y.any():
        raise SampleError("AUC needs both positives and negatives")
    return float(roc_auc_score(y, s))


def spearman_with_interval(a: object, b: object, confidence: float = 0.95,
                           n_bootstrap: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman's rank correlation with a percentile-bootstrap interval over candidates.

    Candidates are resampled with replacement (vectorised: one rank computation per
    bootstrap replicate, done as a batch). Infinite values are allowed (they rank last or
    first); NaN is an error.
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise SampleError(f"a ({x.size}) and b ({y.size}) differ in length")
    if x.size < 3:
        raise SampleError(f"Spearman's correlation needs at least 3 candidates, got {x.size}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise SampleError("inputs contain NaN")
    if np.ptp(stats.rankdata(x)) == 0 or np.ptp(stats.rankdata(y)) == 0:
        raise SampleError("one input is constant; the rank correlation is undefined")
    confidence = check_confidence(confidence)
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_bootstrap, x.size))
    rx = stats.rankdata(x[idx], axis=1)
    ry = stats.rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    boot = boot[np.isfinite(boot)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return {"rho": rho, "ci_low": float(low), "ci_high": float(high),
            "n": int(x.size), "confidence": confidence}
