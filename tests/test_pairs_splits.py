"""Split assignment: paper scaling, counts and fractions, by user, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iipa.errors import IIPAError
from iipa.pairs.splits import assign_splits, held_out_count, parse_size


def pairs(n: int, users: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"high_id": [f"h{i}" for i in range(n)], "low_id": [f"l{i}" for i in range(n)],
                         "user_id": [f"u{u}" for u in rng.integers(0, users, n)]})


def test_paper_scaling():
    assert held_out_count(2_500_000, None) == 50_000  # the paper
    assert held_out_count(10_000_000, None) == 50_000  # capped
    assert held_out_count(100_000, None) == 2_000  # 2 %
    assert held_out_count(10, None) == 1 and held_out_count(2, None) == 0
    assert held_out_count(1000, parse_size("0.1")) == 100
    assert held_out_count(1000, parse_size("37")) == 37
    for bad in ("-1", "abc", "2.5"):
        with pytest.raises(IIPAError):
            parse_size(bad)


def test_counts_seed_and_order_independence():
    df = pairs(1000)
    s = assign_splits(df, val="50", test="0.1", seed=7)
    assert (s == "val").sum() == 50 and (s == "test").sum() == 100 and (s == "train").sum() == 850
    shuffled = df.sample(frac=1, random_state=3)
    assert (assign_splits(shuffled, val="50", test="0.1", seed=7) == s.loc[shuffled.index]).all()
    assert not (assign_splits(df, val="50", test="0.1", seed=8) == s).all()
    with pytest.raises(IIPAError, match="exceed"):
        assign_splits(df, val="600", test="600")


def test_split_by_user_keeps_users_whole():
    df = pairs(1000)
    s = assign_splits(df, val="100", test="100", seed=0, by_user=True)
    per_user = df.assign(split=s).groupby("user_id")["split"].nunique()
    assert (per_user == 1).all()
    assert (s == "test").sum() >= 100 and (s == "val").sum() >= 100 and (s == "train").sum() > 500
