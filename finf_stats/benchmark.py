"""Speed and memory of the batched estimators (``finf bench stats``)."""

from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np

from finf_stats.estimators import influence_from_samples


def run(quick: bool = False) -> dict:
    """Time ``influence_from_samples`` on candidates x samples Gaussian batches.

    The full problem is 100,000 candidates x 256 samples per side; ``quick`` uses 5,000.
    Peak memory is the largest traced numpy/Python allocation during each call.
    """
    candidates, n = (5_000 if quick else 100_000), 256
    rng = np.random.default_rng(0)
    X = rng.normal(size=(candidates, n))
    Y = rng.normal(rng.uniform(-1, 1, size=(candidates, 1)), 1.0, size=(candidates, n))
    settings = [("auc", "delong"), ("binormal", "analytic"), ("binormal", "exact")]
    records = {}
    for method, interval in settings:
        tracemalloc.start()
        start = time.perf_counter()
        res = influence_from_samples(X, Y, method=method, interval=interval)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        records[f"{method}_{interval}"] = {
            "seconds": round(seconds, 3),
            "candidates_per_s": round(candidates / seconds),
            "peak_traced_mib": round(peak / 2**20, 1),
            "finite_fraction": float(np.isfinite(res.mu).mean()),
        }
    # the rank statistics with bootstrap intervals, on a smaller batch
    small = 200 if quick else 2_000
    for method in ("threshold-max", "probit"):
        start = time.perf_counter()
        influence_from_samples(X[:small], Y[:small], method=method, n_bootstrap=200)
        seconds = time.perf_counter() - start
        records[f"{method}_bootstrap200"] = {"seconds": round(seconds, 3), "candidates": small,
                                             "candidates_per_s": round(small / seconds)}
    return {
        "candidates": candidates, "samples_per_side": n, "results": records,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
