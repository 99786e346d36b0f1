"""The generative model of the simulated social network (metadata only, vectorised).

Users (one draw for all users):

- followers at crawl time ``F ~ follower_min · Pareto(follower_tail)`` (heavy-tailed; the
  tail index of the follower distribution is ``follower_tail``), growing over time:
  ``log F(t) = log F − g · age_years`` with a per-user growth rate ``g ≥ 0``;
- posting activity ``a ~ LogNormal(0, activity_sigma)``; the crawl's posts are split over
  users ``~ Multinomial(total_posts, a / Σa)``, so activity is heavy-tailed too;
- a time zone (UTC−8 … UTC+9), a moment in the ``crawl_days`` crawl window, the length of
  their posting history (30–100 % of ``history_days``), engagement and comment rates.

Posts (per block of ``BLOCK_USERS`` users, each block seeded by (seed, block)): a day in the
user's history, a local hour from a daily rhythm (peaks at lunch and in the evening), a
media type, a caption (:mod:`iipa.simulate.captions`), image latents
(:mod:`iipa.simulate.render`) and

    log E[likes] = log engagement_u + follower_elasticity · log F_u(t)          user
                 + popular_tag_effect · #popular tags + tag_effect · #other tags
                 + celebrity_mention_effect · #celebrity @ + mention_effect · #other @
                 + time_of_day_amplitude · cos(2π (local hour − peak_hour) / 24)
                 + video_effect | carousel_effect
                 + log(1 − exp(−age_days / recency_days))                           recency
                 + beta · intrinsic                                                   image
                 + N(0, noise_sigma²)                                                 noise

    likes ~ Poisson(E[likes]),  comments ~ Poisson(likes · comment_rate_u)

Recency: a post keeps gaining likes for about a month (63 % after ``recency_days`` = 5,
99.6 % after 28 days), which is why the paper drops posts younger than a month. Every
term is written to ``truth.parquet`` so analyses can take the model apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from iipa.pairs.rules import DAY_US
from iipa.pairs.schema import MEDIA_TYPES
from iipa.simulate.captions import build_captions
from iipa.simulate.config import SimConfig, crawl_epoch_days
from iipa.simulate.render import LATENT_COLUMNS, draw_latents, intrinsic_score

BLOCK_USERS = 4096          # part of the model: changing it changes every post after block 0
# share of posts per local hour: quiet nights, a lunch peak and an evening peak
_HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 8, 7, 5, 5, 5, 6, 7, 9, 10, 9, 7, 4], np.float64)
HOUR_CDF = np.cumsum(_HOURS) / _HOURS.sum()
_SHORTCODE = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)

POSTS_SCHEMA = pa.schema([
    ("post_id", pa.string()), ("user_id", pa.string()),
    ("taken_at", pa.timestamp("us", tz="UTC")), ("crawled_at", pa.timestamp("us", tz="UTC")),
    ("media_type", pa.string()), ("likes", pa.int64()), ("comments", pa.int64()),
    ("caption", pa.string()), ("hashtags", pa.list_(pa.string())), ("mentions", pa.list_(pa.string())),
    ("followers", pa.int64()), ("following", pa.int64()), ("user_posts", pa.int64()),
])
EFFECT_COLUMNS = ("user_effect", "caption_effect", "time_of_day_effect", "media_effect",
                  "recency_effect", "intrinsic_effect", "noise")
TRUTH_SCHEMA = pa.schema(
    [("post_id", pa.string()), ("user_id", pa.string()), ("intrinsic", pa.float32())]
    + [(c, pa.int8() if c == "shape" else pa.int64() if c == "texture_seed" else pa.float32())
       for c in LATENT_COLUMNS]
    + [(c, pa.float32()) for c in EFFECT_COLUMNS]
    + [("followers_at_post", pa.float32()), ("expected_log_likes", pa.float32())])


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64, so distinct indices give distinct ids."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def shortcodes(index: np.ndarray, seed: int) -> pa.Array:
    """Instagram-like 11-character post ids, unique per (seed, post index)."""
    key = int(_mix64(np.array([seed], np.uint64))[0])
    with np.errstate(over="ignore"):
        h = _mix64(index.astype(np.uint64) + np.uint64(key))
    shifts = np.arange(60, -1, -6, dtype=np.uint64)            # 11 characters of 6 bits
    chars = _SHORTCODE[((h[:, None] >> shifts[None, :]) & np.uint64(63)).astype(np.intp)]
    return pa.array(np.ascontiguousarray(chars).view("S11").ravel()).cast(pa.string())


def draw_users(cfg: SimConfig) -> dict[str, np.ndarray]:
    """User-level quantities for all users (cheap: a few arrays of length ``users``)."""
    rng, n = _rng(cfg.seed, 0), cfg.users
    followers = np.minimum(cfg.follower_min * (1.0 - rng.random(n)) ** (-1.0 / cfg.follower_tail), 5e8)
    activity = np.exp(rng.normal(0.0, cfg.activity_sigma, n))
    return {
        "followers": np.floor(followers),
        "growth": np.maximum(0.0, rng.normal(cfg.follower_growth, cfg.follower_growth / 2, n)),
        "log_engagement": np.log(cfg.engagement) + rng.normal(0.0, cfg.engagement_sigma, n),
        "log_comment_rate": np.log(cfg.comment_rate) + rng.normal(0.0, 0.5, n),
        "following": np.round(np.exp(rng.normal(6.0, 1.0, n))).astype(np.int64),
        "tz_hours": rng.integers(-8, 10, n).astype(np.float64),
        "crawled": crawl_epoch_days(cfg) + rng.random(n) * cfg.crawl_days,
        "history": cfg.history_days * (0.3 + 0.7 * rng.random(n)),
        "posts": rng.multinomial(cfg.total_posts, activity / activity.sum()).astype(np.int64),
    }


def _timestamps(days: np.ndarray) -> pa.Array:
    return pa.array(np.round(days * DAY_US).astype(np.int64), pa.timestamp("us", tz="UTC"))


def iter_blocks(cfg: SimConfig, users: dict[str, np.ndarray] | None = None) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(posts, truth) tables per block of users; their concatenation is the crawl."""
    users = users if users is not None else draw_users(cfg)
    first_post = np.concatenate([[0], np.cumsum(users["posts"])])
    for b, lo in enumerate(range(0, cfg.users, BLOCK_USERS)):
        hi = min(cfg.users, lo + BLOCK_USERS)
        n = int(first_post[hi] - first_post[lo])
        if n:
            yield _block(cfg, users, b, lo, hi, first_post[lo], n)


def _block(cfg: SimConfig, users: dict, b: int, lo: int, hi: int, start: int, n: int) -> tuple[pa.Table, pa.Table]:
    rng = _rng(cfg.seed, 1, b)
    local = np.repeat(np.arange(hi - lo), users["posts"][lo:hi])
    u = {k: v[lo:hi][local] for k, v in users.items()}
    # time: a day in the user's history and a local hour from the daily rhythm
    day = np.floor(u["crawled"] - rng.random(n) * u["history"])
    hour = np.minimum(np.searchsorted(HOUR_CDF, rng.random(n)), 23) + rng.random(n)
    taken = day + (hour - u["tz_hours"]) / 24.0
    excess = taken - u["crawled"]                                     # nothing after the crawl:
    taken = np.where(excess >= 0, taken - np.floor(excess) - 1.0, taken)  # same hour, days earlier
    order = np.lexsort((taken, local))                                # by user, oldest first
    local, taken, hour = local[order], taken[order], hour[order]
    u = {k: v[order] for k, v in u.items()}
    age = u["crawled"] - taken

    media = rng.choice(len(MEDIA_TYPES), n, p=np.asarray(cfg.media_mix) / sum(cfg.media_mix))
    cap = build_captions(rng, local, hi - lo, cfg)
    latents = draw_latents(rng, n, p_empty=cfg.p_empty)
    intrinsic = intrinsic_score(latents, p_empty=cfg.p_empty)

    log_followers_t = np.log(np.maximum(u["followers"], 1.0)) - u["growth"] * age / 365.25
    effects = {
        "user_effect": u["log_engagement"] + cfg.follower_elasticity * log_followers_t,
        "caption_effect": (cfg.popular_tag_effect * cap.n_popular_tags
                           + cfg.tag_effect * (cap.n_tags - cap.n_popular_tags)
                           + cfg.celebrity_mention_effect * cap.n_celebrity_mentions
                           + cfg.mention_effect * (cap.n_mentions - cap.n_celebrity_mentions)),
        "time_of_day_effect": cfg.time_of_day_amplitude * np.cos(2 * np.pi * (hour - cfg.peak_hour) / 24.0),
        "media_effect": np.array([0.0, cfg.video_effect, cfg.carousel_effect])[media],
        "recency_effect": np.log(-np.expm1(-np.maximum(age, 1e-3) / cfg.recency_days)),
        "intrinsic_effect": cfg.beta * intrinsic.astype(np.float64),
        "noise": rng.normal(0.0, cfg.noise_sigma, n) if cfg.noise_sigma > 0 else np.zeros(n),
    }
    expected = sum(effects.values())
    likes = rng.poisson(np.exp(np.minimum(expected, 30.0)))
    comments = rng.poisson(likes * np.exp(u["log_comment_rate"]))

    post_id = shortcodes(start + np.arange(n), cfg.seed)
    user_id = pa.array(lo + local + 10**9).cast(pa.string())
    posts = pa.Table.from_arrays([
        post_id, user_id, _timestamps(taken), _timestamps(u["crawled"]),
        pa.array(MEDIA_TYPES, pa.string()).take(pa.array(media)),
        pa.array(likes, pa.int64()), pa.array(comments, pa.int64()),
        cap.caption, cap.hashtags, cap.mentions,
        pa.array(u["followers"].astype(np.int64)), pa.array(u["following"]), pa.array(u["posts"]),
    ], schema=POSTS_SCHEMA)
    truth_cols = {"post_id": post_id, "user_id": user_id, "intrinsic": intrinsic, **latents,
                  **effects, "followers_at_post": np.exp(log_followers_t), "expected_log_likes": expected}
    truth = pa.Table.from_arrays(
        [truth_cols[f.name] if isinstance(truth_cols[f.name], pa.Array)
         else pa.array(np.asarray(truth_cols[f.name]).astype(f.type.to_pandas_dtype())) for f in TRUTH_SCHEMA],
        schema=TRUTH_SCHEMA)
    return posts, truth
