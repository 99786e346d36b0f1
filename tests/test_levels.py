import math

import numpy as np
import pytest

from iipa.levels import LEVELS, describe, level, level_edges, scaled_score

REF = {"mean": 2.96, "std": 1.55}


def test_scaled_score_is_the_reference_percentile():
    assert scaled_score(2.96, REF) == pytest.approx(50.0)
    assert scaled_score(2.96 + 1.55, REF) == pytest.approx(84.134, abs=1e-3)
    assert 0.0 <= scaled_score(-100, REF) < 1e-6 and 100 - 1e-6 < scaled_score(100, REF) <= 100.0


def test_scaled_score_is_monotone():
    xs = [x / 10 for x in range(-50, 100)]
    ys = [scaled_score(x, REF) for x in xs]
    assert all(a <= b for a, b in zip(ys, ys[1:]))


def test_levels_split_the_range_evenly():
    edges = level_edges(REF)
    widths = [b - a for a, b in zip(edges, edges[1:])]
    assert all(w == pytest.approx(1.55) for w in widths)
    assert [level(x, REF) for x in (-9, edges[0], edges[1], edges[2], edges[3], 99)] == [
        "poor", "bad", "fair", "good", "excellent", "excellent"]
    assert level(2.96, REF) == "fair" and LEVELS[0] == "poor"


def test_describe_without_reference_or_score():
    assert describe(1.0, None) == {"score": 1.0, "scaled": None, "level": None}
    assert describe(math.nan, REF)["level"] is None
    with pytest.raises(ValueError):
        scaled_score(0.0, {"mean": 0.0, "std": 0.0})


def test_reference_distribution_is_the_sample_gaussian():
    from iipa.levels import reference_distribution

    ref = reference_distribution([1.0, 2.0, None, float("nan"), 3.0, 4.0], source="val")
    assert ref["n"] == 4 and ref["mean"] == pytest.approx(2.5) and ref["source"] == "val"
    assert ref["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))  # sample std, not the ML one
    assert reference_distribution([1.0, float("inf")]) is None
