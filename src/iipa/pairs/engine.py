"""What every PDIP engine shares: the per-post rule SQL, the pair keys and window, the exact
P ≥ T test with the greedy matching, and the finishing steps (splits, statistics, files).

An engine (``build.py``: DuckDB; ``spark.py``: Spark) validates the posts, applies
:func:`post_rule_sql` and the caption rule, finds candidate pairs within
:func:`pair_key_columns` and :func:`window_us`, and hands them to :func:`match_candidates`;
its wide pairs frame then goes through :func:`finish_build`. Engines import this module,
never each other, so each can be replaced on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.pairs.matching import greedy_match
from iipa.pairs.rules import DAY_US, RuleConfig, discriminability, popularity_score
from iipa.pairs.splits import assign_splits
from iipa.pairs.stats import IMAGE_COLUMNS, table1, write_stats
from iipa.pairs.table import PAIRS_COLUMNS, read_pairs, write_pairs

# The per-post rules in funnel order (post_rule_sql's reasons), each counted even when 0.
POST_RULES = ("not_single_image", "too_few_likes", "too_recent")
# 1e-9 slack on the ln-likes pre-filter: SQL and numpy logarithms may differ in the last
# bit; the exact test in numpy decides.
LN_SLACK = 1e-9
FEW_PAIRS = 300  # below this many PDIPs the build warns that the table is small to train on


def wide_columns() -> list[str]:
    """The columns of an engine's wide pairs frame, as :func:`finish_build` takes it."""
    return (["high_id", "low_id", "user_id", "p", "delta_s", "delta_t_days"]
            + [f"{c}_{s}" for c in IMAGE_COLUMNS for s in ("high", "low")])


class BuildResult:
    """What a build produced: the pairs (PAIRS_COLUMNS), every count along the way, the files.

    An engine that writes its pairs itself (Spark) passes no frame: ``pairs`` then reads the
    written table on first use, when it is a local file.
    """

    def __init__(self, pairs: pd.DataFrame | None = None, stats: dict | None = None,
                 paths: dict[str, Path | str] | None = None):
        self._pairs, self.stats, self.paths = pairs, stats or {}, paths or {}

    @property
    def pairs(self) -> pd.DataFrame:
        if self._pairs is None:
            where = self.paths.get("pairs")
            if not isinstance(where, Path):
                raise ValueError(f"the pairs were written to {where}; read them there")
            self._pairs = read_pairs(where)
        return self._pairs


def post_rule_sql(cfg: RuleConfig) -> str:
    """First cheap per-post rule a valid post fails, or NULL (SQL shared by DuckDB and Spark).

    The caption rule comes last and separately: it needs the caption features, which are
    computed only for the posts that pass these.
    """
    media = ", ".join("'" + m.replace("'", "''") + "'" for m in cfg.media_types)
    return f"""CASE
      WHEN media_type NOT IN ({media}) THEN 'not_single_image'
      WHEN likes < {int(cfg.min_likes)} THEN 'too_few_likes'
      WHEN crawled_us - taken_us < {round(cfg.min_age_days * DAY_US)} THEN 'too_recent'
    END"""


def pair_key_columns(cfg: RuleConfig) -> list[str]:
    """Columns two posts must share to be paired (same user, same tags/mentions keys)."""
    return ["user_id"] + (["tag_key"] if cfg.same_hashtags else []) + (["mention_key"] if cfg.same_mentions else [])


def window_us(cfg: RuleConfig) -> int:
    return round(cfg.max_gap_days * DAY_US)


def min_ln_gap(cfg: RuleConfig) -> float:
    """The candidate pre-filter on ln(likes_high) - ln(likes_low), with the slack above."""
    return cfg.min_delta_ln_likes - LN_SLACK


def rule_funnel(fails: dict) -> tuple[dict[str, int], int]:
    """``{reason or None: count}`` of :func:`post_rule_sql` -> (funnel, posts passing)."""
    funnel = dict.fromkeys(POST_RULES, 0)
    funnel.update({k: int(v) for k, v in fails.items() if k is not None})
    return funnel, int(fails.get(None, 0))


def match_candidates(high_code, low_code, likes_high, likes_low, cfg: RuleConfig):
    """Exact P ≥ T test, then the greedy matching.

    Returns (selected candidate indices, their ΔS, their P, number of candidates with P ≥ T).

    Runs the same numpy code for every engine, so both produce identical pairs.
    """
    likes_high = np.asarray(likes_high, dtype=np.float64)
    likes_low = np.asarray(likes_low, dtype=np.float64)
    delta_s = popularity_score(likes_high, cfg.log_base) - popularity_score(likes_low, cfg.log_base)
    p = discriminability(delta_s, 0.0, cfg.sigma)
    ok = np.flatnonzero(p >= cfg.threshold)
    sel = ok[greedy_match(np.asarray(high_code)[ok], np.asarray(low_code)[ok], delta_s[ok])]
    return sel, delta_s[sel], p[sel], len(ok)


def build_stats(t1: dict, split_counts: dict[str, int], *, cfg: RuleConfig, seed: int, by_user: bool,
                posts_summary: dict, funnel: dict, engine: str, seconds: float,
                engine_info: dict | None = None) -> dict:
    """stats.json's content, the same for every engine; warnings when the pairs are few or CSV
    records span many lines."""
    stats = {
        "table1": t1,
        "splits": split_counts,
        "posts": posts_summary,
        "funnel": funnel,
        "rules": cfg.to_dict(),
        "seed": seed,
        "split_by_user": by_user,
        "engine": engine,
        **({"engine_info": engine_info} if engine_info else {}),
        "seconds": round(seconds, 3),
    }
    from iipa.pairs.csvread import long_records_warning

    warnings = [w for w in [long_records_warning(posts_summary.get("long_records", []))] if w]
    n = t1["pairs"]
    if n < FEW_PAIRS:
        warnings.append(f"only {n} PDIPs: a small table to train on (below {FEW_PAIRS}, a model's "
                        "held-out accuracy is mostly noise); crawl more accounts or relax the rules")
    if warnings:
        stats["warnings"] = warnings
    return stats


def finish_build(wide: pd.DataFrame, *, cfg: RuleConfig, out_dir, seed: int, val, test, by_user: bool,
                 posts_summary: dict, funnel: dict, engine: str, seconds: float,
                 engine_info: dict | None = None) -> BuildResult:
    """Splits, stats and files from the engine's wide pairs frame (an engine that collects its
    pairs); ``engine_info``: where the engine ran (stats' ``engine_info``), when it says anything."""
    wide = wide.sort_values(["high_id", "low_id"], kind="stable").reset_index(drop=True)
    wide["split"] = assign_splits(wide, val=val, test=test, seed=seed, by_user=by_user).to_numpy()
    pairs = wide[list(PAIRS_COLUMNS)].copy()
    stats = build_stats(table1(wide), {s: int((pairs["split"] == s).sum()) for s in ("train", "val", "test")},
                        cfg=cfg, seed=seed, by_user=by_user, posts_summary=posts_summary, funnel=funnel,
                        engine=engine, seconds=seconds, engine_info=engine_info)
    result = BuildResult(pairs=pairs, stats=stats)
    if out_dir is not None:
        out_dir = Path(out_dir)
        result.paths["pairs"] = write_pairs(pairs, out_dir / "pairs.parquet")
        result.paths["stats"], result.paths["stats_md"] = write_stats(stats, out_dir)
        result.paths["rejects"] = out_dir / "rejects.csv"
    return result


def output_names(out_dir: str | os.PathLike) -> dict[str, str]:
    """The files a build writes into ``out_dir``, by key (as ``BuildResult.paths``)."""
    return {"pairs": f"{out_dir}/pairs.parquet", "stats": f"{out_dir}/stats.json",
            "stats_md": f"{out_dir}/stats.md", "rejects": f"{out_dir}/rejects.csv"}
