"""Every discriminable within-user pair of a set of users, derived from the posts table.

The pairs builder keeps one pair per image (a greedy matching, paper §3.1): right for a
test set, whose pairs should be independent, but wasteful for training on small data.
A user with 16 posts gives at most 8 matched pairs but up to 120 comparisons. The small-
data recipe trains on all of them with soft labels P (paper eq. 6), applying the same
per-post and per-pair rules as the build (likes, age, gap, P ≥ T), but not the caption
rules (captions say nothing about the image; the instagram-dev measurements dropped them).

The users come from the pairs table: training users are every user of the posts table
that has no validation or test pair, so validation and test users stay unseen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iipa.errors import IIPAError
from iipa.pairs.rules import DAY_US, RuleConfig, discriminability, popularity_score

_PAPER = RuleConfig()  # the paper's rules: the one home of their defaults


@dataclass(frozen=True)
class WithinUserRules:
    """Rules of the derived pairs: the build's rules minus matching and caption rules."""

    threshold: float = _PAPER.threshold
    max_gap_days: float | None = _PAPER.max_gap_days  # None: any gap (then P also reflects audience growth)
    min_likes: int = _PAPER.min_likes
    min_age_days: float = _PAPER.min_age_days
    sigma: float = _PAPER.sigma
    log_base: float = _PAPER.log_base

    @classmethod
    def from_rules(cls, rules: RuleConfig | dict, *, max_gap_days: float | None = _PAPER.max_gap_days
                   ) -> WithinUserRules:
        r = rules if isinstance(rules, dict) else rules.to_dict()
        return cls(threshold=float(r.get("threshold", _PAPER.threshold)), max_gap_days=max_gap_days,
                   min_likes=int(r.get("min_likes", _PAPER.min_likes)),
                   min_age_days=float(r.get("min_age_days", _PAPER.min_age_days)),
                   sigma=float(r.get("sigma", _PAPER.sigma)), log_base=float(r.get("log_base", _PAPER.log_base)))


def read_posts(posts: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Valid posts (post_id, user_id, taken_us, crawled_us, likes), validated as the builder does."""
    if isinstance(posts, pd.DataFrame) and {"taken_us", "crawled_us"} <= set(posts.columns):
        return posts
    import duckdb

    from iipa.pairs.schema import load_checked_posts

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        load_checked_posts(con, posts)
        df = con.execute("SELECT post_id, user_id, taken_us, crawled_us, media_type, likes FROM posts").df()
    finally:
        con.close()
    if df.empty:
        raise IIPAError(f"{posts}: no valid posts")
    return df


def within_user_pairs(posts: pd.DataFrame, users: set[str] | None, rules: WithinUserRules) -> pd.DataFrame:
    """Pairs (high_id, low_id, user_id, p, delta_s, delta_t_days) of every user in ``users``
    (None: all users) whose discriminability P reaches ``rules.threshold``."""
    d = posts[(posts["media_type"] == "image") & (posts["likes"] >= rules.min_likes)
              & (posts["crawled_us"] - posts["taken_us"] >= rules.min_age_days * DAY_US)]
    if users is not None:
        d = d[d["user_id"].astype(str).isin(users)]
    frames = [_user_pairs(str(u), g, rules) for u, g in d.groupby("user_id", sort=True)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["high_id", "low_id", "user_id", "p", "delta_s", "delta_t_days"])
    return pd.concat(frames, ignore_index=True)


def _user_pairs(user: str, g: pd.DataFrame, rules: WithinUserRules) -> pd.DataFrame:
    s = popularity_score(g["likes"].to_numpy(np.float64), rules.log_base)
    t = g["taken_us"].to_numpy(np.int64)
    ids = g["post_id"].astype(str).to_numpy()
    i, j = np.triu_indices(len(g), 1)
    hi = np.where(s[i] >= s[j], i, j)
    lo = np.where(s[i] >= s[j], j, i)
    delta_s = s[hi] - s[lo]
    p = discriminability(delta_s, 0.0, rules.sigma)
    gap = np.abs(t[hi] - t[lo]) / DAY_US
    keep = p >= rules.threshold
    if rules.max_gap_days is not None:
        keep &= gap <= rules.max_gap_days
    return pd.DataFrame({"high_id": ids[hi[keep]], "low_id": ids[lo[keep]], "user_id": user,
                         "p": p[keep], "delta_s": delta_s[keep], "delta_t_days": gap[keep]})


def held_out_users(pairs_table: pd.DataFrame) -> set[str]:
    """Users with a validation or test pair: never trained on."""
    held = pairs_table[pairs_table["split"].isin(["val", "test"])]
    return set(held["user_id"].astype(str))
