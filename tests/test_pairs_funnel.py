"""The build's funnel counts each stage: candidates (same user, within the window) before the
P >= T test, discriminable pairs after it, matched pairs last; a small table is warned about."""

from __future__ import annotations

import pandas as pd

from iipa.pairs.build import FEW_PAIRS, build_pairs


def _posts() -> pd.DataFrame:
    crawl = pd.Timestamp("2021-06-01", tz="UTC")
    day = pd.Timedelta("1D")
    rows = [  # user u: three posts within 10 days, one 40 days later; user v: one post
        ("a", "u", crawl - 100 * day, 1000), ("b", "u", crawl - 98 * day, 100), ("c", "u", crawl - 95 * day, 90),
        ("d", "u", crawl - 55 * day, 5000), ("e", "v", crawl - 99 * day, 80),
    ]
    return pd.DataFrame({"post_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
                         "taken_at": [r[2] for r in rows], "crawled_at": crawl, "media_type": "image",
                         "likes": [r[3] for r in rows], "comments": 0, "caption": ""})


def test_funnel_counts_candidates_before_the_probability_threshold(tmp_path, capsys):
    result = build_pairs(_posts(), tmp_path / "out", val=0, test=0)
    funnel = result.stats["funnel"]
    # a-b, a-c, b-c are within 10 days; b-c (100 vs 90 likes) has P ~ 0.6 < 0.95; a is used once
    assert (funnel["candidate_pairs"], funnel["discriminable_pairs"], funnel["pairs"]) == (3, 2, 1)
    assert funnel["eligible_posts"] == 5
    err = capsys.readouterr().err
    assert "only 1 PDIPs" in err and str(FEW_PAIRS) in err
    assert result.stats["warnings"] and "small table" in (tmp_path / "out" / "stats.md").read_text()
