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




# How a posts file may carry its times (both engines read every one alike): the parquet
# column each variant writes for taken_at and crawled_at, and the UTC instant it denotes.
TIME_TYPES = ("timestamp_tz", "timestamp_ntz", "date", "epoch_seconds", "iso_text")


def _iso(ts: pd.Series, i0: int) -> list[str]:
    """ISO 8601 text in several spellings of the same instants: Z, an offset, naive (UTC)."""
    out = []
    for i, t in enumerate(ts):
        form = (i + i0) % 3
        if form == 0:
            out.append(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif form == 1:
            out.append(t.tz_convert("Etc/GMT-2").strftime("%Y-%m-%d %H:%M:%S+02:00"))
        else:
            out.append(t.strftime("%Y-%m-%d %H:%M:%S"))
    return out


def with_time_type(posts: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(posts whose taken_at/crawled_at are of ``kind``, the valid posts with the UTC times they
    denote). Epoch numbers are seconds; the first post's taken_at in milliseconds is a reject."""
    out, meant = posts.copy(), posts.copy()
    for i, col in enumerate(("taken_at", "crawled_at")):
        t = posts[col].dt.tz_convert("UTC").dt.floor("s")
        meant[col] = t
        if kind == "timestamp_tz":
            out[col] = t
        elif kind == "timestamp_ntz":
            out[col] = t.dt.tz_localize(None)
        elif kind == "date":
            out[col] = t.dt.date
            meant[col] = t.dt.floor("D")
        elif kind == "epoch_seconds":
            out[col] = (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1s")
        elif kind == "iso_text":
            out[col] = _iso(t, i)
        else:
            raise ValueError(kind)
    if kind == "epoch_seconds":
        out.loc[0, "taken_at"] *= 1000
        meant = meant.drop(index=0)
    return out, meant


def time_typed_posts(kind: str, folder):
    """A Parquet posts file whose times are of ``kind``, the pairs its times mean, and how
    many of its posts are rejects."""
    posts, meant = with_time_type(random_crawl(n=300, seed=7), kind)
    path = folder / f"posts_{kind}.parquet"
    posts.to_parquet(path, coerce_timestamps="us", allow_truncated_timestamps=True)  # Spark reads no ns
    return path, reference_pairs(meant), len(posts) - len(meant)
