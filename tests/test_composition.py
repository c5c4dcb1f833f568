"""Composition of trade-off functions (METHOD §3.1, §3.3, §3.5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from finf_stats.composition import compose, compose_gaussian, privacy_loss_atoms
from finf_stats.tradeoff import DEFAULT_GRID, TradeOff, gaussian_tradeoff

GRID = DEFAULT_GRID
IDENTITY = TradeOff.from_points([], [], name="id")
FAST = settings(max_examples=25, deadline=None)


def discrete_tradeoff(p: np.ndarray, q: np.ndarray) -> TradeOff:
    """Exact ``T(P, Q)`` of two pmfs on a finite set: Neyman–Pearson, largest ``q/p`` first."""
    p = np.asarray(p, float)
    q = np.asarray(q, float)
    safe_p = np.where(p > 0, p, 1.0)
    ratio = np.where(p > 0, q / safe_p, np.inf)
    order = np.argsort(-ratio, kind="stable")
    alpha = np.concatenate([[0.0], np.cumsum(p[order])])
    beta = np.concatenate([[1.0], 1.0 - np.cumsum(q[order])])
    return TradeOff.from_points(np.clip(alpha, 0, 1), np.clip(beta, 0, 1), name="discrete")


@st.composite
def pmf_pairs(draw: st.DrawFn, max_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Two pmfs on ``k`` points, sometimes with zeros (atoms at ``L = ±inf``)."""
    k = draw(st.integers(2, max_size))
    weights = st.floats(0.05, 1.0)
    p = np.array(draw(st.lists(weights, min_size=k, max_size=k)))
    q = np.array(draw(st.lists(weights, min_size=k, max_size=k)))
    if draw(st.booleans()):
        p[0] = 0.0  # Q-mass where P has none: f(0) < 1
    if draw(st.booleans()):
        q[-1] = 0.0  # P-mass where Q has none: a flat piece
    return p / p.sum(), q / q.sum()


mus = st.floats(0.05, 3.0)


# ----------------------------------------------------------------------------- Gaussian
@FAST
@given(mu1=mus, mu2=mus)
def test_gaussian_tensor_product_is_gaussian(mu1: float, mu2: float) -> None:
    composed = compose(gaussian_tradeoff(mu1), gaussian_tradeoff(mu2))
    composed.validate()
    exact = gaussian_tradeoff(np.hypot(mu1, mu2))(GRID)
    gap = composed(GRID) - exact
    # default grid step min(1e-3, mu_min / 100): measured sup-gaps <= 2e-6 over this range
    assert np.max(np.abs(gap)) < 1e-5
    assert np.max(gap) <= 1e-12  # pessimistic: never above the exact product


@pytest.mark.parametrize(("step", "tolerance"), [(1e-2, 5e-5), (1e-3, 5e-7), (1e-4, 5e-9)])
def test_gaussian_accuracy_is_second_order_in_the_grid_step(step: float, tolerance: float) -> None:
    gaps = [
        np.max(np.abs(compose(gaussian_tradeoff(a), gaussian_tradeoff(b), grid_step=step)(GRID)
                      - gaussian_tradeoff(np.hypot(a, b))(GRID)))
        for a, b in [(0.3, 0.4), (1.0, 1.0), (2.0, 3.0)]
    ]
    assert max(gaps) < tolerance


@pytest.mark.parametrize(("mu", "n"), [(0.1, 100), (0.5, 7), (1.0, 10), (0.03, 1111)])
def test_self_composition_matches_sqrt_n(mu: float, n: int) -> None:
    composed = compose(gaussian_tradeoff(mu), times=n)
    composed.validate()
    gap = composed(GRID) - gaussian_tradeoff(mu * np.sqrt(n))(GRID)
    assert np.max(np.abs(gap)) < 2e-5
    assert np.max(gap) <= 1e-12


def test_times_equals_listing_the_factor() -> None:
    f = gaussian_tradeoff(0.7)
    g = gaussian_tradeoff(0.7)  # a different object: not grouped
    by_power = compose(f, times=3, grid_step=1e-3)
    listed = compose(f, g, gaussian_tradeoff(0.7), grid_step=1e-3)
    assert by_power.distance(listed) < 1e-12


def test_closed_form_without_gaussian_flag_goes_through_chords() -> None:
    g = gaussian_tradeoff(0.8)
    plain = TradeOff(function=g.function, name="closed form")
    composed = compose(plain, plain)
    composed.validate()
    assert composed.distance(gaussian_tradeoff(0.8 * np.sqrt(2))) < 1e-5


# ----------------------------------------------------------------------------- general curves
@FAST
@given(first=pmf_pairs(), second=pmf_pairs(), step=st.sampled_from([1e-2, 1e-3]))
def test_discrete_products_exact_and_pessimistic(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], step: float
) -> None:
    (p1, q1), (p2, q2) = first, second
    exact = discrete_tradeoff(np.outer(p1, p2).ravel(), np.outer(q1, q2).ravel())
    composed = compose(discrete_tradeoff(p1, q1), discrete_tradeoff(p2, q2), grid_step=step)
    composed.validate()
    gap = composed(GRID) - exact(GRID)
    assert np.max(gap) <= 1e-12  # below the true tensor product
    assert np.max(np.abs(gap)) <= step / 2  # first order for a few atoms off the grid


@FAST
@given(first=pmf_pairs(), second=pmf_pairs(), third=pmf_pairs())
def test_commutative_and_associative(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    third: tuple[np.ndarray, np.ndarray],
) -> None:
    f, g, h = (discrete_tradeoff(*pair) for pair in (first, second, third))
    step = 1e-3
    fg = compose(f, g, grid_step=step)
    assert fg.distance(compose(g, f, grid_step=step)) < 1e-12
    left = compose(fg, h, grid_step=step)
    right = compose(f, compose(g, h, grid_step=step), grid_step=step)
    flat = compose(f, g, h, grid_step=step)
    assert left.distance(right) < 1e-12
    assert left.distance(flat) < 1e-12


@FAST
@given(pair=pmf_pairs(), mu=mus)
def test_identity_is_neutral(pair: tuple[np.ndarray, np.ndarray], mu: float) -> None:
    f = discrete_tradeoff(*pair)
    # on the grid the discretisation of f itself is the only change: the identity adds nothing
    assert compose(f, IDENTITY, grid_step=1e-3).distance(compose(f, grid_step=1e-3)) < 1e-12
    g = gaussian_tradeoff(mu)
    assert compose(g, IDENTITY).distance(g) < 1e-6


def test_identity_leaves_a_curve_with_slopes_on_the_grid_unchanged() -> None:
    step = 1e-2
    slopes = np.exp(step * np.array([150, 40, 3, 0, -7, -90]))  # decreasing |f'|, on the grid
    widths = np.array([0.01, 0.1, 0.2, 0.3, 0.2, 0.1])  # then flat on [0.91, 1]
    drops = slopes * widths
    assert drops.sum() < 1  # the rest is the atom 1 - f(0) at alpha = 0
    alpha = np.concatenate([[0.0], np.cumsum(widths)])
    beta = np.concatenate([[drops.sum()], drops.sum() - np.cumsum(drops)])
    f = TradeOff.from_points(alpha, np.clip(beta, 0, 1))
    f.validate()
    assert float(f(0.0)) < 1
    assert compose(f, IDENTITY, grid_step=step).distance(f) < 1e-12


def test_composed_curve_is_valid_and_below_each_factor() -> None:
    rng = np.random.default_rng(3)
    factors = [discrete_tradeoff(rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4)))
               for _ in range(5)]
    composed = compose(*factors, gaussian_tradeoff(0.4))
    composed.validate()
    for f in factors:  # composing adds information: never easier to confuse than one step
        assert np.all(composed(GRID) <= f(GRID) + 1e-12)


def test_perfectly_distinguishable_factor_absorbs() -> None:
    composed = compose(gaussian_tradeoff(np.inf), gaussian_tradeoff(1.0))
    assert np.max(composed(GRID)) < 1e-12


def test_infinite_atoms_compose_exactly() -> None:
    # f(0) = 0.7 (Q-mass 0.3 at L = +inf) and flat beyond alpha = 0.6 (P-mass 0.4 at -inf)
    f = TradeOff.from_points([0.0, 0.6], [0.7, 0.0])
    atoms = privacy_loss_atoms(f)
    assert atoms.q_pos_inf == pytest.approx(0.3)
    assert atoms.p_neg_inf == pytest.approx(0.4)
    ff = compose(f, f, grid_step=1e-3)
    ff.validate()
    assert float(ff(0.0)) == pytest.approx(0.7**2, abs=1e-12)
    assert float(ff(1 - 0.6**2)) == pytest.approx(0.0, abs=1e-12)  # flat from 1 - 0.6^2 on


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        compose()
    with pytest.raises(ValueError, match="times"):
        compose(IDENTITY, times=0)
    with pytest.raises(ValueError, match="grid_step"):
        compose(IDENTITY, grid_step=-1.0)
    with pytest.raises(TypeError):
        compose(lambda a: 1 - a)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- post-processing
@FAST
@given(
    mu=st.floats(0.1, 3.0),
    edges=st.lists(st.floats(-3.0, 4.0), min_size=1, max_size=6, unique=True),
    flip=st.floats(0.0, 0.5),
)
def test_post_processing_never_increases_influence(
    mu: float, edges: list[float], flip: float
) -> None:
    """T(g(P), g(Q)) >= T(P, Q), exactly: g = binning, then randomised response over bins."""
    cuts = np.concatenate([[-np.inf], np.sort(edges), [np.inf]])
    p_bins = np.diff(stats.norm.cdf(cuts))
    q_bins = np.diff(stats.norm.cdf(cuts, loc=mu))
    binned = discrete_tradeoff(p_bins, q_bins)
    k = p_bins.size
    # keep the bin with probability 1 - flip, else report a uniformly random bin
    channel = (1 - flip) * np.eye(k) + flip / k
    noisy = discrete_tradeoff(p_bins @ channel, q_bins @ channel)
    original = gaussian_tradeoff(mu)(GRID)
    assert np.all(binned(GRID) >= original - 1e-12)
    assert np.all(noisy(GRID) >= binned(GRID) - 1e-12)


def test_post_processing_of_a_composition_by_summing() -> None:
    """The sum of per-step statistics is a post-processing of the trajectory."""
    shifts, sds = np.array([0.3, -0.1, 0.8, 0.2]), np.array([1.0, 0.5, 2.0, 1.5])
    trajectory = compose(*(gaussian_tradeoff(d / s) for d, s in zip(shifts, sds, strict=True)))
    summed = gaussian_tradeoff(compose_gaussian(shifts, signed=True, sds=sds))
    assert np.all(summed(GRID) >= trajectory(GRID) - 1e-12)
    assert summed.distance(trajectory) > 0.01  # strictly: the shifts are not proportional


# ----------------------------------------------------------------------------- compose_gaussian
def test_compose_gaussian_forms() -> None:
    assert compose_gaussian([3.0, -4.0]) == pytest.approx(5.0)
    assert compose_gaussian([0.5] * 16) == pytest.approx(2.0)
    assert compose_gaussian([1.0, 2.0], signed=True, sds=[1.0, 2.0]) == pytest.approx(
        3 / np.sqrt(5)
    )
    assert compose_gaussian([1.0, -1.0, 0.5], signed=True) == pytest.approx(0.5 / np.sqrt(3))
    assert compose_gaussian([0.2], signed=True, sds=[0.0]) == np.inf
    assert compose_gaussian([-0.2, 0.1], signed=True, sds=[0.0, 0.0]) == -np.inf
    assert compose_gaussian([0.0], signed=True, sds=[0.0]) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(-5.0, 5.0), st.floats(0.01, 10.0)), min_size=1, max_size=30
    )
)
def test_summed_statistic_obeys_cauchy_schwarz(data: list[tuple[float, float]]) -> None:
    shifts = np.array([d for d, _ in data])
    sds = np.array([s for _, s in data])
    summed = compose_gaussian(shifts, signed=True, sds=sds)
    trajectory = compose_gaussian(shifts / sds)
    assert abs(summed) <= trajectory * (1 + 1e-12) + 1e-300
    # the trajectory form agrees with the tensor product; the sign of the sum with its shifts
    if abs(shifts.sum()) > 1e-9:
        assert np.sign(summed) == np.sign(shifts.sum())


def test_compose_gaussian_matches_numerical_composition() -> None:
    mus_ = [0.2, 0.5, 1.1, 0.05]
    numerical = compose(*(gaussian_tradeoff(m) for m in mus_))
    assert numerical.distance(gaussian_tradeoff(compose_gaussian(mus_))) < 1e-5


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([],), {}, "empty"),
        (([0.1, np.nan],), {}, "NaN"),
        (([0.1, np.inf],), {}, "infinite"),
        (([0.1, 0.2],), {"signed": True, "sds": [1.0, -1.0]}, "non-negative"),
        (([0.1, 0.2],), {"signed": True, "sds": [1.0]}, "one value per shift"),
        (([0.1, 0.2],), {"signed": True, "sds": [1.0, np.nan]}, "NaN"),
        (([0.1],), {"sds": [1.0]}, "signed=True"),
        (([[0.1]],), {}, "1-D"),
    ],
)
def test_compose_gaussian_errors(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compose_gaussian(*args, **kwargs)
