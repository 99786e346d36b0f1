"""Parameters of the simulated social network, in one typed place.

Every number of the generative model lives here, is written beside the crawl as
``simulation.json`` and can be read back, so a crawl can be regenerated bit for bit
from its JSON. The model itself is documented in :mod:`iipa.simulate.network`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from iipa.errors import IIPAError
from iipa.fileio import write_text

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SimConfig:
    """The simulator's knobs. Defaults give a crawl whose statistics resemble the paper's Table 1."""

    # size and seed
    users: int = 1000
    posts_per_user: float = 20.0          # mean; activity is heavy-tailed around it
    posts: int | None = None              # total number of posts; overrides posts_per_user
    seed: int = 0
    # time
    crawl_date: str = "2019-03-01T00:00:00+00:00"
    crawl_days: float = 3.0               # each user is crawled at a random moment in this window
    history_days: float = 365.0           # the oldest posts are this old
    # users: followers at crawl time ~ Pareto(follower_tail) above follower_min
    follower_min: float = 1000.0
    follower_tail: float = 1.1            # tail index alpha; smaller = heavier tail
    follower_growth: float = 0.5          # mean growth of log followers per year
    activity_sigma: float = 1.0           # lognormal sigma of a user's posting rate
    # likes: log likes = user + caption + time of day + media + recency + beta*intrinsic + noise
    engagement: float = 0.1               # median likes per follower of a mature post
    engagement_sigma: float = 0.4         # user-to-user spread of log engagement
    follower_elasticity: float = 0.9      # d log likes / d log followers
    beta: float = 0.6                     # log likes per standard deviation of intrinsic popularity
    noise_sigma: float = 0.3              # per-post Gaussian noise on log likes
    popular_tag_effect: float = 0.2       # per hashtag from the popular pool
    tag_effect: float = 0.02              # per hashtag from the unpopular pool
    celebrity_mention_effect: float = 0.3  # per @-mention of a celebrity
    mention_effect: float = 0.03          # per @-mention of an ordinary user
    time_of_day_amplitude: float = 0.15   # cosine bump peaking at peak_hour (local time)
    peak_hour: float = 20.0
    recency_days: float = 5.0             # likes accrue as 1 - exp(-age / recency_days)
    video_effect: float = 0.1
    carousel_effect: float = 0.15
    comment_rate: float = 0.02            # median comments per like
    # media and captions (paper Table 1: 45.6% no hashtag, 47.9% no @, 11.1% no caption)
    media_mix: tuple[float, float, float] = (0.75, 0.12, 0.13)   # image, video, carousel
    p_no_caption: float = 0.11
    p_no_hashtag: float = 0.46
    p_no_mention: float = 0.48
    p_long_caption: float = 0.3           # captions with more than six descriptive words
    p_habitual_tags: float = 0.75         # a post reuses one of its user's usual tag sets
    p_popular_tag: float = 0.3
    p_celebrity_mention: float = 0.15
    # images: share of empty backgrounds (no salient subject)
    p_empty: float = 0.25

    def __post_init__(self) -> None:
        checks = {
            "users": self.users >= 1,
            "posts_per_user": self.posts_per_user > 0,
            "posts": self.posts is None or self.posts >= 1,
            "seed": 0 <= self.seed < 2**63,
            "crawl_days": self.crawl_days >= 0,
            "history_days": self.history_days >= 1,
            "follower_min": self.follower_min >= 1,
            "follower_tail": self.follower_tail > 0,
            "noise_sigma": self.noise_sigma >= 0,
            "recency_days": self.recency_days > 0,
            "media_mix": len(self.media_mix) == 3 and min(self.media_mix) >= 0 and sum(self.media_mix) > 0,
        }
        for name in ("p_no_caption", "p_no_hashtag", "p_no_mention", "p_long_caption", "p_habitual_tags",
                     "p_popular_tag", "p_celebrity_mention", "p_empty"):
            checks[name] = 0.0 <= getattr(self, name) <= 1.0
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise IIPAError("invalid simulation parameter(s): " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))
        for k, v in dataclasses.asdict(self).items():
            if isinstance(v, float) and not math.isfinite(v):
                raise IIPAError(f"invalid simulation parameter: {k}={v!r} (not finite)")
        try:
            crawl_epoch_days(self)
        except ValueError as exc:
            raise IIPAError(f"invalid crawl_date {self.crawl_date!r}: {exc}") from None

    @property
    def total_posts(self) -> int:
        return int(self.posts) if self.posts is not None else max(1, round(self.users * self.posts_per_user))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["media_mix"] = list(self.media_mix)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SimConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise IIPAError(f"unknown simulation parameter(s): {', '.join(unknown)}")
        d = dict(d)
        if "media_mix" in d:
            d["media_mix"] = tuple(float(x) for x in d["media_mix"])
        return cls(**d)


def crawl_epoch_days(config: SimConfig) -> float:
    """The crawl date as days since 1970-01-01 UTC."""
    from datetime import datetime, timezone

    dt = datetime.fromisoformat(config.crawl_date.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp() / 86400.0


def write_config(config: SimConfig, path: str | os.PathLike, **info) -> Path:
    """``simulation.json``: the parameters plus whatever summary the caller adds."""
    path = Path(path)
    doc = {"iipa_simulation": FORMAT_VERSION, "config": config.to_dict(), **info}
    return write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def read_config(path: str | os.PathLike) -> SimConfig:
    """Read ``simulation.json`` (or a folder holding it) back into a :class:`SimConfig`."""
    path = Path(path)
    if path.is_dir():
        path = path / "simulation.json"
    try:
        doc = json.loads(path.read_text())
        return SimConfig.from_dict(doc["config"])
    except FileNotFoundError:
        raise IIPAError(f"{path}: no such simulation file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IIPAError(f"{path}: not a simulation file ({exc.__class__.__name__}: {exc})") from None
