"""finf_stats: the statistics of f-influence, importable without torch.

f-influence treats the influence of a training subset S as a hypothesis test between the
law P of a target statistic of models trained on D and its law Q for D \\ S, over the
randomness of training. Its Gaussian form is one signed number ``mu`` per subset.
"""

from finf_stats.estimators import METHODS, influence_from_samples
from finf_stats.multiple_testing import adjusted_p_values, reject_flags
from finf_stats.results import InfluenceResult, InfluenceResults
from finf_stats.tradeoff import (
    InvalidTradeOffError,
    TradeOff,
    empirical_tradeoff,
    gaussian_tradeoff,
)
from finf_stats.validation import SampleError

__all__ = [
    "METHODS",
    "InfluenceResult",
    "InfluenceResults",
    "InvalidTradeOffError",
    "SampleError",
    "TradeOff",
    "adjusted_p_values",
    "empirical_tradeoff",
    "gaussian_tradeoff",
    "influence_from_samples",
    "reject_flags",
]

try:  # composition, CLT and privacy conversions (optional until they land)
    from finf_stats.clt import clt_mu  # noqa: F401
    from finf_stats.composition import compose, compose_gaussian  # noqa: F401
    from finf_stats.privacy import mu_to_delta  # noqa: F401

    __all__ += ["clt_mu", "compose", "compose_gaussian", "mu_to_delta"]
except ImportError:  # pragma: no cover
    pass
