"""Build popularity-discriminable image pairs (PDIPs) from crawl metadata with DuckDB.

Stages: validate posts (schema.py) → keep posts passing the per-post rules → candidate pairs
by a self-join within user, identical hashtag and @-mention keys and the time window →
exact P ≥ T filter and greedy matching in numpy (matching.py, shared with the Spark engine)
→ splits (splits.py) → pairs.parquet, stats.json/.md (stats.py), rejects.csv.

The self-join is bounded: posts are bucketed by ``taken_at // window`` and each post
meets only the posts of its own and the two neighbouring buckets of the same user and
caption keys, so the work grows with the posts inside a window, not with a user's history.
DuckDB reads the files itself and spills to a temporary database, so inputs larger than
memory stream.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.errors import IIPAError
from iipa.output import ensure_out_dir
from iipa.pairs.matching import greedy_match
from iipa.pairs.rules import RuleConfig, discriminability, popularity_score
from iipa.pairs.schema import caption_features_sql, load_checked_posts
from iipa.pairs.splits import assign_splits
from iipa.pairs.stats import IMAGE_COLUMNS, table1, write_stats
from iipa.pairs.table import PAIRS_COLUMNS, write_pairs

DAY_US = 86_400_000_000
ENGINES = ("duckdb", "spark")


@dataclass
class BuildResult:
    """What a build produced: the pairs (PAIRS_COLUMNS) and every count along the way."""

    pairs: pd.DataFrame
    stats: dict
    paths: dict[str, Path] = field(default_factory=dict)


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


def candidate_sql(cfg: RuleConfig, table: str = "eligible") -> str:
    """Candidate pairs (high, low) among ``table``: same keys, within the window, likes high > low,
    and ln-likes gap large enough to possibly reach P ≥ T (the exact test happens in numpy)."""
    w = window_us(cfg)
    bucket = max(w, 1)
    keys = " AND ".join(f"a.{k} = b.{k}" for k in pair_key_columns(cfg))
    # 1e-9 slack: SQL and numpy logarithms may differ in the last bit; numpy decides.
    slack_min = cfg.min_delta_ln_likes - 1e-9
    return f"""
    WITH e AS (SELECT *, taken_us // {bucket} AS bucket FROM {table}),
    shifted AS (SELECT e.*, bucket + d AS join_bucket FROM e, (VALUES (-1), (0), (1)) AS t(d))
    SELECT a.node AS high_code, b.node AS low_code, a.likes AS likes_high, b.likes AS likes_low,
           abs(a.taken_us - b.taken_us) AS dt_us
    FROM e a JOIN shifted b ON {keys} AND a.bucket = b.join_bucket
    WHERE a.likes > b.likes AND ln(a.likes) - ln(b.likes) >= {slack_min!r}
      AND abs(a.taken_us - b.taken_us) <= {w}
    """


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


def check_out_dir(out_dir: str | os.PathLike, *, overwrite: bool) -> None:
    """Create ``out_dir``; refuse one that is a file, or not empty unless ``overwrite``."""
    out = ensure_out_dir(out_dir)
    present = sorted(p.name for p in out.iterdir() if not p.name.startswith(".iipa-pairs-"))
    if present and not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise IIPAError(f"--out {out}: not empty ({shown}); pass --overwrite to replace an earlier build's files")


def finish_build(wide: pd.DataFrame, *, cfg: RuleConfig, out_dir, seed: int, val, test, by_user: bool,
                 posts_summary: dict, funnel: dict, engine: str, seconds: float) -> BuildResult:
    """Splits, stats and files from the engine's wide pairs frame (shared by all engines)."""
    wide = wide.sort_values(["high_id", "low_id"], kind="stable").reset_index(drop=True)
    wide["split"] = assign_splits(wide, val=val, test=test, seed=seed, by_user=by_user).to_numpy()
    pairs = wide[list(PAIRS_COLUMNS)].copy()
    stats = {
        "table1": table1(wide),
        "splits": {s: int((pairs["split"] == s).sum()) for s in ("train", "val", "test")},
        "posts": posts_summary,
        "funnel": funnel,
        "rules": cfg.to_dict(),
        "seed": seed,
        "split_by_user": by_user,
        "engine": engine,
        "seconds": round(seconds, 3),
    }
    result = BuildResult(pairs=pairs, stats=stats)
    if out_dir is not None:
        out_dir = Path(out_dir)
        result.paths["pairs"] = write_pairs(pairs, out_dir / "pairs.parquet")
        result.paths["stats"], result.paths["stats_md"] = write_stats(stats, out_dir)
        result.paths["rejects"] = out_dir / "rejects.csv"
    return result


def build_pairs(posts, out_dir: str | os.PathLike | None = None, *, rules: RuleConfig | None = None,
                crawled_at=None, seed: int = 0, val=None, test=None, split_by_user: bool = False,
                engine: str = "duckdb", memory_limit: str | None = "2GB", threads: int | None = None,
                overwrite: bool = False) -> BuildResult:
    """Build the PDIP database from posts files (or a DataFrame) into ``out_dir``.

    Writes ``pairs.parquet``, ``stats.json``, ``stats.md`` and ``rejects.csv`` there when
    ``out_dir`` is given; a folder that already holds anything is refused unless
    ``overwrite`` (an earlier build's outputs are not replaced without a word). See the module docstring for the stages. ``memory_limit`` caps
    DuckDB's buffers (it spills beyond); the process peaks about 1 GB above it.
    """
    cfg = rules or RuleConfig()
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
    if engine == "spark":
        from iipa.pairs.spark import build_pairs_spark

        return build_pairs_spark(posts, out_dir, rules=cfg, crawled_at=crawled_at, seed=seed, val=val,
                                 test=test, split_by_user=split_by_user)
    if engine != "duckdb":
        raise IIPAError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    import duckdb

    start = time.perf_counter()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".iipa-pairs-", dir=out_dir) as tmp:
        con = duckdb.connect(os.path.join(tmp, "build.duckdb"))
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET temp_directory = '{tmp}'")
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            rejects = Path(out_dir) / "rejects.csv" if out_dir is not None else None
            summary = load_checked_posts(con, posts, crawled_at=crawled_at, rejects_path=rejects)
            funnel, wide = _pairs_duckdb(con, cfg, summary.types)
        finally:
            con.close()
    return finish_build(wide, cfg=cfg, out_dir=out_dir, seed=seed, val=val, test=test, by_user=split_by_user,
                        posts_summary=summary.to_dict(), funnel=funnel, engine="duckdb",
                        seconds=time.perf_counter() - start)


def _pairs_duckdb(con, cfg: RuleConfig, types: dict[str, str]) -> tuple[dict, pd.DataFrame]:
    """Eligible posts → candidates → matching → the wide pairs frame; plus the rule funnel."""
    rule = post_rule_sql(cfg)
    funnel = {"not_single_image": 0, "too_few_likes": 0, "too_recent": 0}
    passing = 0
    for fails, n in con.execute(f"SELECT {rule} AS fails, count(*) FROM posts GROUP BY 1").fetchall():
        if fails is None:
            passing = int(n)
        else:
            funnel[fails] = int(n)
    # Node codes in post_id order: the matching's tie-break by id becomes an integer compare.
    features = caption_features_sql(types, f"(SELECT * FROM posts WHERE ({rule}) IS NULL)")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE eligible AS
        SELECT (row_number() OVER (ORDER BY post_id)) - 1 AS node, * EXCLUDE (caption_s)
        FROM ({features}) WHERE n_words <= {int(cfg.max_caption_words)}""")
    n_eligible = con.execute("SELECT count(*) FROM eligible").fetchone()[0]
    funnel["caption_too_long"] = passing - int(n_eligible)
    cand = con.execute(candidate_sql(cfg)).fetchnumpy()
    sel, delta_s, p, n_ok = match_candidates(cand["high_code"], cand["low_code"], cand["likes_high"],
                                       cand["likes_low"], cfg)
    funnel.update({"eligible_posts": int(n_eligible), "candidate_pairs": int(len(cand["high_code"])),
                   "discriminable_pairs": int(n_ok), "pairs": int(len(sel))})
    chosen = pd.DataFrame({"high_code": np.asarray(cand["high_code"])[sel],
                           "low_code": np.asarray(cand["low_code"])[sel],
                           "p": p, "delta_s": delta_s,
                           "delta_t_days": np.asarray(cand["dt_us"], dtype=np.float64)[sel] / DAY_US})
    del cand
    con.register("chosen", chosen)
    image_cols = ", ".join(f"a.{c} AS {c}_high, b.{c} AS {c}_low" for c in IMAGE_COLUMNS)
    wide = con.execute(f"""
        SELECT a.post_id AS high_id, b.post_id AS low_id, a.user_id, c.p, c.delta_s, c.delta_t_days, {image_cols}
        FROM chosen c JOIN eligible a ON a.node = c.high_code JOIN eligible b ON b.node = c.low_code""").df()
    return funnel, wide

