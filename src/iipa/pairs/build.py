"""Build popularity-discriminable image pairs (PDIPs) from crawl metadata with DuckDB.

Stages: validate posts (schema.py) → keep posts passing the per-post rules → candidate pairs
by a self-join within user, identical hashtag and @-mention keys and the time window →
exact P ≥ T filter and greedy matching in numpy → splits, pairs.parquet, stats.json/.md,
rejects.csv (engine.py: the steps every engine shares).

:func:`build_pairs` picks the engine from ``ENGINES``; the Spark engine (spark.py) is
loaded only when asked for.

The self-join is bounded: posts are bucketed by ``taken_at // window`` and each post
meets only the posts of its own and the two neighbouring buckets of the same user and
caption keys, so the work grows with the posts inside a window, not with a user's history.
DuckDB reads the files itself and spills to a temporary database, so inputs larger than
memory stream.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.errors import IIPAError
from iipa.output import ensure_out_dir
from iipa.pairs.engine import (
    FEW_PAIRS,  # noqa: F401 - re-exported: where the warning's threshold used to live
    BuildResult,
    finish_build,
    match_candidates,
    min_ln_gap,
    pair_key_columns,
    post_rule_sql,
    rule_funnel,
    window_us,
)
from iipa.pairs.rules import DAY_US, RuleConfig
from iipa.pairs.schema import caption_features_sql, load_checked_posts
from iipa.pairs.stats import IMAGE_COLUMNS
from iipa.pairs.uris import local_path

# Engine name -> (its build function as "module:function", the engine-only options it takes).
# Every build function takes (posts, out_dir, *, rules, crawled_at, seed, val, test, split_by_user).
ENGINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "duckdb": ("iipa.pairs.build:build_pairs_duckdb", ("memory_limit", "threads")),
    "spark": ("iipa.pairs.spark:build_pairs_spark", ("master", "conf")),
}


def candidate_sql(cfg: RuleConfig, table: str = "eligible") -> str:
    """Candidate pairs (high, low) among ``table``: same keys, within the window, likes high > low,
    and ln-likes gap large enough to possibly reach P ≥ T (the exact test happens in numpy)."""
    w = window_us(cfg)
    bucket = max(w, 1)
    keys = " AND ".join(f"a.{k} = b.{k}" for k in pair_key_columns(cfg))
    slack_min = min_ln_gap(cfg)
    return f"""
    WITH e AS (SELECT *, taken_us // {bucket} AS bucket FROM {table}),
    shifted AS (SELECT e.*, bucket + d AS join_bucket FROM e, (VALUES (-1), (0), (1)) AS t(d))
    SELECT a.node AS high_code, b.node AS low_code, a.likes AS likes_high, b.likes AS likes_low,
           abs(a.taken_us - b.taken_us) AS dt_us
    FROM e a JOIN shifted b ON {keys} AND a.bucket = b.join_bucket
    WHERE a.likes > b.likes AND ln(a.likes) - ln(b.likes) >= {slack_min!r}
      AND abs(a.taken_us - b.taken_us) <= {w}
    """


def within_window_count_sql(cfg: RuleConfig, table: str = "eligible") -> str:
    """The funnel's candidate pairs: every unordered pair of ``table`` with the same keys (same
    user, and tags/mentions where the rules ask) taken within the window, before the P >= T test."""
    w = window_us(cfg)
    bucket = max(w, 1)
    keys = " AND ".join(f"a.{k} = b.{k}" for k in pair_key_columns(cfg))
    return f"""
    WITH e AS (SELECT *, taken_us // {bucket} AS bucket FROM {table}),
    shifted AS (SELECT e.*, bucket + d AS join_bucket FROM e, (VALUES (-1), (0), (1)) AS t(d))
    SELECT count(*) FROM e a JOIN shifted b ON {keys} AND a.bucket = b.join_bucket
    WHERE a.post_id < b.post_id AND abs(a.taken_us - b.taken_us) <= {w}
    """


def check_out_dir(out_dir: str | os.PathLike, *, overwrite: bool) -> None:
    """Create ``out_dir``; refuse one that is a file, or not empty unless ``overwrite``."""
    out = ensure_out_dir(out_dir)
    present = sorted(p.name for p in out.iterdir() if not p.name.startswith(".iipa-pairs-"))
    if present and not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise IIPAError(f"--out {out}: not empty ({shown}); pass --overwrite to replace an earlier build's files")


def build_pairs(posts, out_dir: str | os.PathLike | None = None, *, rules: RuleConfig | None = None,
                crawled_at=None, seed: int = 0, val=None, test=None, split_by_user: bool = False,
                engine: str = "duckdb", memory_limit: str | None = None, threads: int | None = None,
                master: str | None = None, conf: dict[str, str] | None = None,
                overwrite: bool = False) -> BuildResult:
    """Build the PDIP database from posts files (or a DataFrame) into ``out_dir``.

    Writes ``pairs.parquet``, ``stats.json``, ``stats.md`` and ``rejects.csv`` there when
    ``out_dir`` is given; a folder that already holds anything is refused unless
    ``overwrite`` (an earlier build's outputs are not replaced without a word). See the module
    docstring for the stages. DuckDB's options: ``memory_limit`` caps its buffers (default 2GB;
    it spills beyond; the process peaks about 1 GB above it), ``threads``. Spark's: ``master``
    and ``conf`` (settings) shape the session it starts when none is active. An option of the
    other engine is refused, not ignored.
    """
    if engine not in ENGINES:
        raise IIPAError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    target, option_names = ENGINES[engine]
    given = {"memory_limit": memory_limit, "threads": threads, "master": master, "conf": conf}
    foreign = [_flag(k) for k, v in given.items() if v is not None and k not in option_names]
    if foreign:
        raise IIPAError(f"{', '.join(foreign)}: not an option of the {engine} engine (its options: "
                        f"{', '.join(map(_flag, option_names)) or 'none'})")
    options = {k: v for k, v in given.items() if k in option_names and v is not None}
    if out_dir is not None:
        local = local_path(out_dir)
        if local is not None:
            out_dir = local
            check_out_dir(out_dir, overwrite=overwrite)
        elif engine != "spark":
            raise IIPAError(f"--out {out_dir}: the {engine} engine writes to a local folder "
                            "(--engine spark writes to hdfs://, s3a://, gs:// and other Hadoop URIs)")
        else:
            options["overwrite"] = overwrite  # the engine checks the folder where it lives
    module, _, function = target.partition(":")
    build = getattr(importlib.import_module(module), function)
    result = build(posts, out_dir, rules=rules or RuleConfig(), crawled_at=crawled_at, seed=seed, val=val,
                   test=test, split_by_user=split_by_user, **options)
    for note in result.stats.get("warnings", ()):
        print(f"iipa pairs build: warning: {note}", file=sys.stderr)
    return result


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def build_pairs_duckdb(posts, out_dir: str | os.PathLike | None = None, *, rules: RuleConfig, crawled_at=None,
                       seed: int = 0, val=None, test=None, split_by_user: bool = False,
                       memory_limit: str | None = "2GB", threads: int | None = None) -> BuildResult:
    """The DuckDB engine (see the module docstring)."""
    import duckdb

    cfg = rules
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
    funnel, passing = rule_funnel(dict(con.execute(f"SELECT {rule} AS fails, count(*) FROM posts GROUP BY 1").fetchall()))
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
    n_candidates = con.execute(within_window_count_sql(cfg)).fetchall()[0][0]
    funnel.update({"eligible_posts": int(n_eligible), "candidate_pairs": int(n_candidates),
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

