"""Candidate subsets ``S`` (single points and groups) and their weight vectors.

Text forms accepted by :func:`parse_candidates` (comma separated items, combined in order,
duplicates dropped):

* ``random:K``: ``K`` single points chosen with the seed;
* ``flipped`` / ``outliers``: every corrupted training point, one candidate each;
* ``groups:KxG``: ``K`` random groups of ``G`` points;
* ``I`` (an integer): the single point ``I``;
* ``I-J`` or ``I+J+...``: the group of points ``I..J`` (inclusive) or the listed points.
"""

from __future__ import annotations

import numpy as np

from simulations.data import Dataset


class CandidateError(ValueError):
    """Empty or out-of-range candidate sets."""


def check_candidates(groups: list[np.ndarray] | list[list[int]], n: int
                     ) -> list[np.ndarray]:
    """Validate groups of training indices: non-empty, in ``[0, n)``, no repeats inside."""
    if len(groups) == 0:
        raise CandidateError("the candidate set is empty: give at least one subset S")
    out = []
    for i, g in enumerate(groups):
        a = np.asarray(g, dtype=np.int64).reshape(-1)
        if a.size == 0:
            raise CandidateError(f"candidate {i} is an empty subset")
        bad = a[(a < 0) | (a >= n)]
        if bad.size:
            raise CandidateError(f"candidate {i} has training indices out of range "
                                 f"[0, {n}): {bad[:5].tolist()}")
        if np.unique(a).size != a.size:
            raise CandidateError(f"candidate {i} repeats an index: {a.tolist()}")
        out.append(np.sort(a))
    return out


def candidate_label(group: np.ndarray) -> str:
    """``"17"`` for a single point, ``"3+5+9"`` for a group."""
    return "+".join(str(int(i)) for i in group)


def parse_candidates(text: str, data: Dataset, seed: int = 0) -> list[np.ndarray]:
    """Candidates from the text form in the module docstring."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    n = data.n
    groups: list[np.ndarray] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.startswith("random:"):
            k = int(item.split(":", 1)[1])
            if not 0 < k <= n:
                raise CandidateError(f"random:{k}: need 1 <= K <= n = {n}")
            groups += [np.array([i]) for i in np.sort(rng.choice(n, size=k, replace=False))]
        elif item == "flipped":
            groups += [np.array([i]) for i in data.flipped]
        elif item == "outliers":
            groups += [np.array([i]) for i in data.outliers]
        elif item.startswith("groups:"):
            k, g = (int(v) for v in item.split(":", 1)[1].lower().split("x"))
            groups += [np.sort(rng.choice(n, size=g, replace=False)) for _ in range(k)]
        elif "-" in item:
            lo, hi = (int(v) for v in item.split("-"))
            groups.append(np.arange(lo, hi + 1))
        elif "+" in item:
            groups.append(np.array([int(v) for v in item.split("+")]))
        else:
            try:
                groups.append(np.array([int(item)]))
            except ValueError:
                raise CandidateError(f"cannot read candidate item {item!r}") from None
    seen: set[tuple[int, ...]] = set()
    unique = []
    for g in groups:
        key = tuple(int(i) for i in np.sort(g))
        if key not in seen:
            seen.add(key)
            unique.append(g)
    return check_candidates(unique, n)


def removal_weights(groups: list[np.ndarray], base: np.ndarray) -> np.ndarray:
    """Weight vectors ``(len(groups), n)``: ``base`` with each group's points set to 0."""
    W = np.repeat(np.asarray(base, dtype=np.float64)[None], len(groups), axis=0)
    for c, g in enumerate(groups):
        W[c, g] = 0.0
    return W
