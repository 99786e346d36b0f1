"""The paper's PDIP constraints (§3.1) as pure functions, plus their configuration.

Every engine (DuckDB, Spark) applies the same rules; the SQL versions live in engine.py
(shared by both), schema.py and spark.py, and are tested against these functions. Paper
defaults: single-image posts, likes ≥ 50, posted ≥ 30 days before the crawl, same user, |Δ taken_at| ≤ 10 days, caption
≤ 6 words besides hashtags and @-mentions, identical hashtags and @-mentions (content and
number, case-insensitive), S = ln(likes), P = Φ(ΔS / (√2 σ)) ≥ T with T = 0.95, σ = 0.3.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist

from iipa.errors import IIPAError

# The tag and word parser lives in tags.py (one definition for Python and SQL); re-exported here.
from iipa.pairs.tags import descriptive_words, parse_hashtags, parse_mentions, tag_key  # noqa: F401

# Timestamps are int64 microseconds (Parquet's and DuckDB's "us"); one day in that unit.
DAY_US = 86_400_000_000


@dataclass(frozen=True)
class RuleConfig:
    """All PDIP constraints; defaults are the paper's."""

    min_likes: int = 50
    min_age_days: float = 30.0
    max_gap_days: float = 10.0
    max_caption_words: int = 6
    threshold: float = 0.95
    sigma: float = 0.3
    log_base: float = math.e
    media_types: tuple[str, ...] = field(default=("image",))
    same_hashtags: bool = True
    same_mentions: bool = True

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold < 1.0:
            # T ≤ 0.5 would admit pairs whose "more popular" image has fewer likes.
            raise IIPAError(f"threshold T must be in (0.5, 1), got {self.threshold}")
        if self.sigma <= 0:
            raise IIPAError(f"sigma must be positive, got {self.sigma}")
        if self.log_base <= 1:
            raise IIPAError(f"log base must be > 1, got {self.log_base}")
        if self.min_likes < 1:
            raise IIPAError(f"min likes must be ≥ 1 (log of 0 likes is undefined), got {self.min_likes}")
        if self.max_gap_days < 0 or self.min_age_days < 0 or self.max_caption_words < 0:
            raise IIPAError("max gap, min age and max caption words must be ≥ 0")
        if not self.media_types:
            raise IIPAError("at least one media type must be allowed")

    @property
    def min_delta_ln_likes(self) -> float:
        """Smallest ln(likes_high) − ln(likes_low) that can reach P ≥ T (a pre-filter for SQL)."""
        return math.sqrt(2) * self.sigma * NormalDist().inv_cdf(self.threshold) * math.log(self.log_base)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["media_types"] = list(self.media_types)
        return d


# The paper's values, the defaults of every rule below and of `iipa pairs build`'s options.
PAPER = RuleConfig()

# ---------------------------------------------------------------- per-post rules

def is_single_image(media_type: str, allowed: tuple[str, ...] = PAPER.media_types) -> bool:
    """Only single-image posts: likes cannot be split across the items of a carousel."""
    return str(media_type).strip().lower() in allowed


def has_enough_likes(likes: int, min_likes: int = PAPER.min_likes) -> bool:
    """Fewer than 50 likes are dominated by the boundary effect of small counts (paper §3.1)."""
    return likes >= min_likes


def is_settled(taken_at: datetime, crawled_at: datetime, min_age_days: float = PAPER.min_age_days) -> bool:
    """Likes stop growing after about four weeks, so a post must be ≥ 30 days old at the crawl."""
    return crawled_at - taken_at >= timedelta(days=min_age_days)


def caption_ok(caption: str, max_words: int = PAPER.max_caption_words) -> bool:
    """Long captions carry their own appeal; the paper allows at most six descriptive words."""
    return descriptive_words(caption) <= max_words


# ---------------------------------------------------------------- pair rules

def same_user(user_a: str, user_b: str) -> bool:
    """Follower counts differ between users; comparing within one user removes them."""
    return user_a == user_b


def within_gap(taken_a: datetime, taken_b: datetime, max_gap_days: float = PAPER.max_gap_days) -> bool:
    """A user's audience changes over time; both posts must be ≤ 10 days apart."""
    return abs(taken_a - taken_b) <= timedelta(days=max_gap_days)


def same_tags(tags_a: list[str] | None, tags_b: list[str] | None) -> bool:
    """Identical hashtags (or mentions) in content and number, ignoring order and case."""
    return tag_key(tags_a) == tag_key(tags_b)


def popularity_score(likes, base: float = PAPER.log_base):
    """S = log_base(likes), the absolute popularity of a post (scalar or array)."""
    import numpy as np  # here, not at the top: `iipa pairs build --help` reads RuleConfig's defaults

    # Dividing by ln(e) == 1.0 is exact, so the natural-log default loses nothing.
    return np.log(np.asarray(likes, dtype=np.float64)) / math.log(base)


def discriminability(s_a, s_b, sigma: float = PAPER.sigma):
    """P(Q_A ≥ Q_B | S_A, S_B) = Φ((S_A − S_B) / (√2 σ)), paper eq. (6) (scalar or array)."""
    import numpy as np
    from scipy.special import ndtr  # the pairs extra; vectorised Φ over millions of candidates

    return ndtr((np.asarray(s_a, dtype=np.float64) - np.asarray(s_b, dtype=np.float64)) / (math.sqrt(2) * sigma))


def is_discriminable(p, threshold: float = PAPER.threshold):
    """A pair is a PDIP when P reaches T (P exactly at T counts)."""
    import numpy as np

    return np.asarray(p) >= threshold
