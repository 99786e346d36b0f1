"""One post in at most one pair: deterministic greedy matching, vectorised.

The order: candidate pairs sorted by ΔS descending (the same order as P, which saturates
to 1.0 in floating point while ΔS does not), ties broken by the more popular post's id,
then the less popular post's id (both ascending). The greedy matching walks that order and
takes a pair when both posts are still unused. It prefers the most discriminable pairs,
is deterministic, and is *maximal*: a pair left out has a post already used by a pair that
comes earlier in the order.

Walking 10⁷ candidates one by one in Python takes tens of seconds, so we compute the same
matching in rounds of numpy operations: a live pair that comes first in the order among
all live pairs touching either of its two posts ("locally dominant") is taken by the greedy
walk too; take all of them at once, drop the pairs touching their posts, repeat. With a
strict total order this yields exactly the greedy matching (Preis 1999; Hoepman 2004).
Rounds usually shrink the live set geometrically; when a round removes little (long chains
of ever-better pairs), the rest is finished by the plain walk, which gives the same result.
"""

from __future__ import annotations

import numpy as np

_SEQUENTIAL_BELOW = 2_000  # live pairs: a plain walk beats another numpy round
_MIN_PROGRESS = 0.02  # fraction of live pairs a round must remove to keep rounding


def greedy_order(high: np.ndarray, low: np.ndarray, delta_s: np.ndarray) -> np.ndarray:
    """Indices of the candidates in matching order (ΔS desc, then high asc, then low asc).

    ``high``/``low`` are integer post codes whose order equals the order of the post ids.
    """
    return np.lexsort((low, high, -np.asarray(delta_s, dtype=np.float64)))


def _walk(u: np.ndarray, v: np.ndarray, live: np.ndarray, used: np.ndarray) -> list[int]:
    """The plain greedy walk over ``live`` (in order), marking ``used`` in place."""
    taken = []
    for e, a, b in zip(live.tolist(), u[live].tolist(), v[live].tolist(), strict=True):
        if not used[a] and not used[b]:
            used[a] = used[b] = True
            taken.append(e)
    return taken


def greedy_match(high: np.ndarray, low: np.ndarray, delta_s: np.ndarray) -> np.ndarray:
    """Select a maximal set of candidate pairs with no post used twice (greedy, see module doc).

    ``high`` and ``low`` are non-negative integer codes of the two posts (order-consistent with
    their ids, for the tie-break). Returns the indices of the selected candidates, sorted.
    """
    high = np.asarray(high, dtype=np.int64)
    low = np.asarray(low, dtype=np.int64)
    n_edges = len(high)
    if n_edges == 0:
        return np.zeros(0, dtype=np.int64)
    order = greedy_order(high, low, delta_s)
    u, v = high[order], low[order]  # edge k is the k-th in matching order
    n_nodes = int(max(u.max(), v.max())) + 1
    used = np.zeros(n_nodes, dtype=bool)
    first = np.full(n_nodes, n_edges, dtype=np.int64)  # best live edge rank per post
    live = np.arange(n_edges, dtype=np.int64)
    chosen: list[np.ndarray] = []
    while live.size:
        if live.size < _SEQUENTIAL_BELOW:
            chosen.append(np.asarray(_walk(u, v, live, used), dtype=np.int64))
            break
        lu, lv = u[live], v[live]
        np.minimum.at(first, lu, live)
        np.minimum.at(first, lv, live)
        dominant = (first[lu] == live) & (first[lv] == live)
        first[lu] = n_edges
        first[lv] = n_edges
        picked = live[dominant]
        chosen.append(picked)
        used[u[picked]] = True
        used[v[picked]] = True
        before = live.size
        live = live[~(used[lu] | used[lv])]
        if before - live.size < _MIN_PROGRESS * before:
            chosen.append(np.asarray(_walk(u, v, live, used), dtype=np.int64))
            break
    ranks = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return np.sort(order[ranks])


def greedy_match_reference(high, low, delta_s) -> np.ndarray:
    """The plain sequential walk; slow, used by the tests as the definition."""
    order = greedy_order(np.asarray(high), np.asarray(low), delta_s)
    used: set = set()
    taken = []
    for i in order.tolist():
        a, b = high[i], low[i]
        if a not in used and b not in used:
            used.update((a, b))
            taken.append(i)
    return np.sort(np.asarray(taken, dtype=np.int64))
