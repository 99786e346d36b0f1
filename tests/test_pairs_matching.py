"""Greedy matching: equals the sequential definition, maximal, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from iipa.pairs.matching import greedy_match, greedy_match_reference


def random_graph(seed: int, n_nodes: int, n_edges: int, n_weights: int):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_nodes, n_edges)
    b = rng.integers(0, n_nodes, n_edges)
    keep = a != b
    a, b = a[keep], b[keep]
    # Few distinct weights: many ties, so the id tie-break matters.
    w = rng.integers(0, n_weights, len(a)) * 0.25
    return a, b, w


@pytest.mark.parametrize("seed,n_nodes,n_edges,n_weights", [
    (0, 50, 200, 3), (1, 3000, 20000, 10), (2, 10000, 30000, 1000), (3, 400, 40000, 2)])
def test_vectorised_rounds_equal_the_sequential_greedy(seed, n_nodes, n_edges, n_weights):
    a, b, w = random_graph(seed, n_nodes, n_edges, n_weights)
    got = greedy_match(a, b, w)
    assert np.array_equal(got, greedy_match_reference(a, b, w))
    used = np.concatenate([a[got], b[got]])
    assert len(np.unique(used)) == len(used), "a post is used twice"
    free = np.ones(n_nodes, bool)
    free[used] = False
    assert not np.any(free[a] & free[b]), "not maximal: a pair of two unused posts was left out"


def test_long_chain_of_improving_pairs():
    # A path whose pairs get better along it: one locally dominant pair per round, so the
    # rounds stall and the sequential finish must take over, with the same answer.
    n = 5000
    a, b = np.arange(n - 1), np.arange(1, n)
    w = np.arange(n - 1, dtype=float)
    got = greedy_match(a, b, w)
    assert np.array_equal(got, greedy_match_reference(a, b, w))
    assert len(got) == (n - 1 + 1) // 2


def test_prefers_most_discriminable_and_breaks_ties_by_ids():
    # 0-1 (ΔS 2) beats 1-2 (ΔS 1); ties between 3-4 and 3-5 go to the smaller low id.
    a = np.array([1, 0, 3, 3])
    b = np.array([2, 1, 5, 4])
    w = np.array([1.0, 2.0, 1.0, 1.0])
    assert set(greedy_match(a, b, w).tolist()) == {1, 3}


def test_independent_of_input_order():
    a, b, w = random_graph(7, 2000, 10000, 5)
    perm = np.random.default_rng(0).permutation(len(a))
    base = {(x, y) for x, y in zip(a[greedy_match(a, b, w)], b[greedy_match(a, b, w)], strict=True)}
    sel = greedy_match(a[perm], b[perm], w[perm])
    assert {(x, y) for x, y in zip(a[perm][sel], b[perm][sel], strict=True)} == base


def test_empty():
    assert greedy_match(np.zeros(0, int), np.zeros(0, int), np.zeros(0)).size == 0
