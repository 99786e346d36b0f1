"""A small random crawl and an independent, brute-force PDIP builder from rules.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iipa.pairs import rules
from iipa.pairs.matching import greedy_match_reference
from iipa.pairs.rules import RuleConfig

CAPTIONS = ["", "nice", "#Beach #sun", "#sun #beach day", "@Ann hello", "@ann hi #beach",
            "one two three four five six", "one two three four five six seven", "#Beach #Beach"]


def random_crawl(n: int = 600, seed: int = 0, users: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    crawl = pd.Timestamp("2021-01-01", tz="UTC")
    days = rng.integers(0, 120, n) + rng.choice([0.0, 0.5, 0.25], n)  # exact-day gaps happen
    likes = np.round(np.exp(rng.normal(4.5, 1.0, n))).astype(int)
    likes[rng.random(n) < 0.1] = 50  # the boundary
    return pd.DataFrame({
        "post_id": [f"s{rng.integers(0, 10**9):09d}x{i}" for i in range(n)],
        "user_id": [f"user{u}" for u in rng.integers(0, users, n)],
        "taken_at": crawl - pd.to_timedelta(days + 25, unit="D"),
        "crawled_at": crawl,
        "media_type": rng.choice(["image", "video", "carousel"], n, p=[0.8, 0.1, 0.1]),
        "likes": likes,
        "comments": rng.integers(0, 5, n),
        "caption": rng.choice(CAPTIONS, n),
    })


def reference_pairs(posts: pd.DataFrame, cfg: RuleConfig | None = None) -> set[tuple[str, str]]:
    """All rules applied pair by pair with the pure functions, then the sequential greedy."""
    cfg = cfg or RuleConfig()
    ok = posts[[rules.is_single_image(m, cfg.media_types) and rules.has_enough_likes(lk, cfg.min_likes)
                and rules.is_settled(t, c, cfg.min_age_days) and rules.caption_ok(cap, cfg.max_caption_words)
                for m, lk, t, c, cap in zip(posts.media_type, posts.likes, posts.taken_at, posts.crawled_at,
                                            posts.caption, strict=True)]]
    recs = ok.to_dict("records")
    hi, lo, ds = [], [], []
    for a in recs:
        for b in recs:
            if a is b or not rules.same_user(a["user_id"], b["user_id"]) or a["likes"] <= b["likes"]:
                continue
            if not rules.within_gap(a["taken_at"], b["taken_at"], cfg.max_gap_days):
                continue
            if cfg.same_hashtags and not rules.same_tags(rules.parse_hashtags(a["caption"]),
                                                         rules.parse_hashtags(b["caption"])):
                continue
            if cfg.same_mentions and not rules.same_tags(rules.parse_mentions(a["caption"]),
                                                         rules.parse_mentions(b["caption"])):
                continue
            s_a, s_b = rules.popularity_score(a["likes"], cfg.log_base), rules.popularity_score(b["likes"], cfg.log_base)
            if rules.is_discriminable(rules.discriminability(s_a, s_b, cfg.sigma), cfg.threshold):
                hi.append(a["post_id"])
                lo.append(b["post_id"])
                ds.append(float(s_a - s_b))
    if not hi:
        return set()
    sel = greedy_match_reference(np.array(hi), np.array(lo), np.array(ds))
    return {(hi[i], lo[i]) for i in sel}


