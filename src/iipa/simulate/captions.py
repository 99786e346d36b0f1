"""Captions with descriptive words, hashtags and @-mentions, built vectorised.

Hashtags come from a *popular* pool (30 ubiquitous tags such as ``#instagood``: each adds
``popular_tag_effect`` to log likes) and an *unpopular* pool (1,000 niche tags, each
``tag_effect``); @-mentions from 20 celebrities (``celebrity_mention_effect``) and 2,000
ordinary users (``mention_effect``). Users have habits: each has three usual hashtag sets
and two usual mention sets, and a post reuses one of them with ``p_habitual_tags`` (else
it draws a fresh set), so a user's posts often carry identical tags, as the paper's
same-hashtags pair rule needs. Captions are words, then hashtags, then mentions; about a
third are long (more than six descriptive words); some are empty.

The strings are assembled by pyarrow (a list of tokens per post, joined with spaces), so
ten million captions cost seconds, not a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iipa.simulate.config import SimConfig

WORDS = (
    "the a my our this that so and with in at on of for to is was best new good great little big "
    "day night morning weekend sunday today time life love home city beach sea sky sun summer winter "
    "coffee dinner lunch breakfast food friends family dog cat baby trip walk view light colors "
    "happy beautiful amazing perfect lovely cozy sweet fresh wild quiet missing back finally again "
    "here there always never just still more last first one two three ready vibes mood memories"
).split()
POPULAR_TAGS = (
    "love instagood photooftheday fashion beautiful happy cute tbt like4like followme picoftheday "
    "follow me selfie summer art instadaily friends repost nature girl fun style smile food instalike "
    "family travel fitness likeforlike"
).split()
_PREFIXES = ("my little urban lazy sunday tiny old green blue night quiet slow wild small local "
             "weekend rainy sunny daily random").split()
_NOUNS = ("garden kitchen balcony street corner cafe bakery harbor river hills forest trail market "
          "studio garage library window rooftop bridge station park lake field orchard village "
          "workshop alley courtyard pier meadow canyon desert island valley meadows cabin farm "
          "gallery museum temple castle tower lighthouse vineyard ranch dunes glacier beachhouse "
          "bookshop florist").split()
_FIRST = ("ava leo mia noah emma liam zoe max lily sam nora eli ruby jack isla finn ivy theo luna "
          "oscar").split()
CELEBRITIES = tuple(f"{name}.{suffix}" for name, suffix in zip(_FIRST, ["official", "star"] * 10, strict=True))
MAX_WORDS, MAX_TAGS, MAX_MENTIONS = 40, 10, 3
TAG_SLOTS, MENTION_SLOTS = 3, 2


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, tuple[str, ...]]:
    """The fixed pools (part of the model, identical for every seed)."""
    niche = [f"{p}{n}" for p in _PREFIXES for n in _NOUNS][:1000]
    ordinary = [f"{f}_{k}" for k in range(100) for f in _FIRST]
    return {"words": tuple(WORDS), "tags": tuple(POPULAR_TAGS) + tuple(niche),
            "mentions": CELEBRITIES + tuple(ordinary)}


@lru_cache(maxsize=1)
def _arrow_pools() -> dict[str, pa.Array]:
    v = vocabulary()
    tokens = list(v["words"]) + ["#" + t for t in v["tags"]] + ["@" + m for m in v["mentions"]]
    return {"tokens": pa.array(tokens, pa.string()), "tags": pa.array(v["tags"], pa.string()),
            "mentions": pa.array(v["mentions"], pa.string())}


def _draw(rng: np.random.Generator, n: int, size) -> np.ndarray:
    """Zipf-like ranks in [0, n): P(k) = log((k + 2) / (k + 1)) / log(n + 1) ~ 1 / k.

    The inverse CDF is closed-form, so this costs one exp per draw (no table search).
    """
    k = np.exp(rng.random(size) * np.log(n + 1.0)) - 1.0
    return np.minimum(k, n - 1).astype(np.int32)


def _draw_pool(rng, n_top: int, n_rest: int, p_top: float, size) -> np.ndarray:
    """Ids from a top pool (0..n_top-1) with probability p_top, else from the rest; Zipf-like in each."""
    top = rng.random(size) < p_top
    return np.where(top, _draw(rng, n_top, size), n_top + _draw(rng, n_rest, size))


@dataclass
class Captions:
    caption: pa.Array          # string
    hashtags: pa.Array         # list<string>, without '#'
    mentions: pa.Array         # list<string>, without '@'
    n_words: np.ndarray
    n_tags: np.ndarray
    n_popular_tags: np.ndarray
    n_mentions: np.ndarray
    n_celebrity_mentions: np.ndarray


def _sets(rng, n_users: int, user_local: np.ndarray, slots: int, p_habit: float, max_size: int,
          sizes_fn, ids_fn) -> tuple[np.ndarray, np.ndarray]:
    """Per post: an id matrix (n, max_size) and a size, reusing the user's habitual sets."""
    n = len(user_local)
    fresh = np.flatnonzero(rng.random(n) >= p_habit)
    pick = user_local * slots + rng.integers(0, slots, n)
    pick[fresh] = n_users * slots + np.arange(len(fresh))
    n_sets = n_users * slots + len(fresh)
    sizes = np.minimum(sizes_fn(n_sets), max_size)
    ids = ids_fn((n_sets, max_size))
    return ids[pick], sizes[pick]


def build_captions(rng: np.random.Generator, user_local: np.ndarray, n_users: int, cfg: SimConfig) -> Captions:
    """Captions, hashtag and mention lists for posts by ``n_users`` users (``user_local`` per post)."""
    v = vocabulary()
    n = len(user_local)
    n_pop, n_celeb = len(POPULAR_TAGS), len(CELEBRITIES)
    has_caption = rng.random(n) >= cfg.p_no_caption
    # P(no hashtag | caption) so that the overall share of posts without hashtags is p_no_hashtag
    p_no_tag = np.clip((cfg.p_no_hashtag - cfg.p_no_caption) / max(1e-9, 1 - cfg.p_no_caption), 0, 1)
    p_no_men = np.clip((cfg.p_no_mention - cfg.p_no_caption) / max(1e-9, 1 - cfg.p_no_caption), 0, 1)
    tags, n_tags = _sets(rng, n_users, user_local, TAG_SLOTS, cfg.p_habitual_tags, MAX_TAGS,
                         lambda k: rng.geometric(0.3, k),
                         lambda s: _draw_pool(rng, n_pop, len(v["tags"]) - n_pop, cfg.p_popular_tag, s))
    n_tags = np.where(has_caption & (rng.random(n) >= p_no_tag), n_tags, 0)
    men, n_men = _sets(rng, n_users, user_local, MENTION_SLOTS, cfg.p_habitual_tags, MAX_MENTIONS,
                       lambda k: 1 + (rng.random(k) < 0.25) + (rng.random(k) < 0.05),
                       lambda s: _draw_pool(rng, n_celeb, len(v["mentions"]) - n_celeb, cfg.p_celebrity_mention, s))
    n_men = np.where(has_caption & (rng.random(n) >= p_no_men), n_men, 0)
    long = rng.random(n) < cfg.p_long_caption
    n_words = np.where(long, 7 + rng.poisson(8.0, n), np.minimum(rng.poisson(1.5, n), 6))
    n_words = np.where(has_caption, np.minimum(n_words, MAX_WORDS), 0)
    n_words = np.where(has_caption & (n_words + n_tags + n_men == 0), 1, n_words)   # a caption is never blank

    tag_valid = np.arange(MAX_TAGS) < n_tags[:, None]
    men_valid = np.arange(MAX_MENTIONS) < n_men[:, None]
    # token stream per post: words, then '#tags', then '@mentions' (indices into one token pool)
    counts = n_words + n_tags + n_men
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    post = np.repeat(np.arange(n), counts)
    pos = np.arange(offsets[-1]) - offsets[post]
    nw, nt = n_words[post], n_tags[post]
    token = np.empty(len(post), np.int64)
    is_word = pos < nw
    token[is_word] = _draw(rng, len(WORDS), int(is_word.sum()))
    is_tag = ~is_word & (pos < nw + nt)
    token[is_tag] = len(WORDS) + tags[post[is_tag], (pos - nw)[is_tag]]
    is_men = ~is_word & ~is_tag
    token[is_men] = len(WORDS) + len(v["tags"]) + men[post[is_men], (pos - nw - nt)[is_men]]
    pools = _arrow_pools()
    tokens = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pools["tokens"].take(pa.array(token)))
    caption = pc.binary_join(tokens, " ")

    def lists(ids: np.ndarray, valid: np.ndarray, pool: pa.Array) -> pa.Array:
        off = np.zeros(n + 1, np.int32)
        np.cumsum(valid.sum(1), out=off[1:])
        return pa.ListArray.from_arrays(pa.array(off), pool.take(pa.array(ids[valid])))

    return Captions(
        caption=caption, hashtags=lists(tags, tag_valid, pools["tags"]),
        mentions=lists(men, men_valid, pools["mentions"]), n_words=n_words, n_tags=n_tags,
        n_popular_tags=((tags < n_pop) & tag_valid).sum(1), n_mentions=n_men,
        n_celebrity_mentions=((men < n_celeb) & men_valid).sum(1))
