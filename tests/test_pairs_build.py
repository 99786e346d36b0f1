"""The DuckDB builder against a brute-force builder made of the pure rules; outputs and CLI."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from iipa.pairs import build_pairs, read_pairs
from iipa.pairs.rules import RuleConfig
from pairs_helpers import random_crawl, reference_pairs


@pytest.mark.parametrize("cfg", [RuleConfig(), RuleConfig(threshold=0.8, sigma=0.5, max_gap_days=3, min_likes=20,
                                                          log_base=10, same_mentions=False)])
def test_duckdb_pairs_equal_the_brute_force_reference(cfg):
    posts = random_crawl()
    got = build_pairs(posts, rules=cfg)
    want = reference_pairs(posts, cfg)
    assert len(want) > 10, "the crawl should produce pairs"
    assert set(zip(got.pairs.high_id, got.pairs.low_id, strict=True)) == want
    assert got.stats["funnel"]["pairs"] == len(want)


def test_outputs_and_invariants(tmp_path):
    posts = random_crawl(seed=1)
    res = build_pairs(posts, tmp_path, seed=3)
    pairs = read_pairs(tmp_path / "pairs.parquet")
    assert list(pairs.columns) == ["high_id", "low_id", "user_id", "p", "delta_s", "delta_t_days", "split"]
    assert (pairs["p"] >= 0.95).all() and (pairs["delta_s"] > 0).all() and (pairs["delta_t_days"] <= 10).all()
    ids = pd.concat([pairs.high_id, pairs.low_id])
    assert ids.is_unique, "a post appears in two pairs"
    by_id = posts.set_index("post_id")
    assert (by_id.loc[pairs.high_id, "user_id"].to_numpy() == by_id.loc[pairs.low_id, "user_id"].to_numpy()).all()
    stats = json.loads((tmp_path / "stats.json").read_text())
    t1 = stats["table1"]
    assert t1["pairs"] == len(pairs) and t1["users"] == pairs.user_id.nunique()
    assert t1["avg_p"] == pytest.approx(pairs.p.mean())
    likes = by_id.loc[ids, "likes"]
    assert t1["avg_likes_per_image"] == pytest.approx(likes.mean())
    assert sum(stats["splits"].values()) == len(pairs)
    assert stats["posts"]["valid"] == len(posts)
    md = (tmp_path / "stats.md").read_text()
    assert "Number of PDIPs" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "Paper" not in ln]
    assert all(len(re.split(r"(?<!\\)\|", ln)) == 5 for ln in rows[:10]), "a stray | breaks the Markdown table"
    assert (tmp_path / "rejects.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    again = build_pairs(posts.sample(frac=1, random_state=5), seed=3)  # row order does not matter
    pd.testing.assert_frame_equal(again.pairs, res.pairs)


def test_no_pairs_is_not_an_error():
    posts = random_crawl(n=30).assign(media_type="video")
    res = build_pairs(posts)
    assert len(res.pairs) == 0 and res.stats["funnel"]["not_single_image"] == 30
    assert res.stats["table1"]["avg_p"] is None
