"""The PDIP build on Spark (``--engine spark``): the same stages as build.py, in pyspark.

Validation, the per-post rules and the bounded candidate self-join run as Spark DataFrame
operations with the same regular expressions and SQL rules as the DuckDB engine; the P ≥ T
test and the greedy matching run per user through ``applyInPandas`` with the very same
numpy function (``engine.match_candidates``). Candidate pairs never cross users and the
matching order only compares ΔS and post ids, so matching user by user yields exactly the
global matching, and the pair set equals the DuckDB engine's.

Runs in the active Spark session (``spark-submit``'s, a notebook's), else in a new one:
``local[*]`` unless ``master`` says otherwise (:func:`get_spark`). The matched pairs (at
most half the eligible posts) and the rejects are collected to the driver for splits,
statistics and the output files.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.csvsafe import frame_to_csv
from iipa.fileio import atomic_path
from iipa.pairs import engine as B
from iipa.pairs.csvread import csv_header
from iipa.pairs.rules import DAY_US, RuleConfig
from iipa.pairs.schema import (
    DUP_ORDER,
    FUTURE_SLACK_US,
    MEDIA_TYPES,
    OPTIONAL_COUNTS,
    REJECT_REASONS,
    REQUIRED_COLUMNS,
    SUFFIXES,
    PostsSummary,
    check_required_columns,
    expand_post_files,
    now_us,
)
from iipa.pairs.stats import IMAGE_COLUMNS
from iipa.pairs.tags import GIVEN_TAG_RE, HASHTAG_RE, MENTION_RE, WORD_TOKEN_RE

NUMERIC = ("int", "bigint", "double", "float", "decimal", "smallint", "tinyint")
CORRUPT = "_corrupt_record"


# The pairs build's own defaults (--conf overrides them): a few shuffle partitions suit the
# one-machine crawls most builds are (Spark's 200 would be mostly empty tasks), Arrow for the
# per-user matching's pandas transfers.
PAIRS_CONF = {"spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.pyspark.enabled": "true"}


def get_spark(master: str | None = None, conf: dict[str, str] | None = None):
    """The active Spark session, or a new one (``local[*]`` unless ``master``; UTC, no UI;
    :data:`PAIRS_CONF`, then ``conf`` over it): see :func:`iipa.spark.session.get_session`.

    Unlike scoring's, a local session keeps the JVM's own JIT and collector: the build's
    joins and window run in the JVM, where C2 pays (1 M posts, local[*] on 2 cores: 60-61 s with
    them, 64-66 s with scoring's C1-only serial-GC JVM; benchmarks/pairs.py --engine spark)."""
    from iipa.spark.session import get_session

    return get_session(master, conf, app="iipa-pairs", defaults=PAIRS_CONF, local_java=False)[0]


def _read(spark, posts):
    from pyspark.sql import functions as F

    if isinstance(posts, pd.DataFrame):
        return spark.createDataFrame(posts).withColumn("filename", F.lit("<dataframe>")), "the posts table"
    files = expand_post_files(posts)
    frames = []
    for f in files:
        kind = SUFFIXES[f.suffix.lower()]
        if kind == "csv":
            df = _read_csv(spark, f)
        else:
            df = spark.read.parquet(str(f)) if kind == "parquet" else spark.read.json(str(f))
        frames.append(df.withColumn("filename", F.lit(str(f))))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df, allowMissingColumns=True)
    return out, ", ".join(map(str, files))


def _read_csv(spark, path: Path):
    """The DuckDB engine's fixed dialect (csvread.py): RFC 4180, quoted line breaks, every
    field as text. A record Spark cannot parse keeps its text in ``_corrupt_record`` and
    becomes an "unparsable row" reject (Spark gives no line numbers)."""
    from pyspark.sql.types import StringType, StructField, StructType

    columns = csv_header(path)
    schema = StructType([StructField(c, StringType()) for c in [*columns, CORRUPT]])
    return (spark.read.schema(schema).option("header", True).option("sep", ",").option("quote", '"')
            .option("escape", '"').option("multiLine", True).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT).csv(str(path)))


def _time_us(F, df, col: str):
    d = F.expr(f"try_cast({col} AS DOUBLE)")
    seconds = F.when(F.abs(d) < 1e11, F.unix_micros(F.timestamp_seconds(d)))  # as schema._time_expr
    if df.schema[col].dataType.simpleString() in NUMERIC:
        return seconds
    return F.coalesce(F.unix_micros(F.expr(f"try_cast({col} AS TIMESTAMP)")), seconds)


def _checked(df, crawled_at):
    from pyspark.sql import functions as F

    taken = _time_us(F, df, "taken_at")
    crawled = _time_us(F, df, "crawled_at") if "crawled_at" in df.columns else F.lit(None).cast("bigint")
    if crawled_at is not None:
        crawled = F.coalesce(crawled, F.lit(int(pd.Timestamp(crawled_at, tz="UTC").value // 1000)))
    df = (df.withColumn("pid", F.expr("nullif(trim(CAST(post_id AS STRING)), '')"))
          .withColumn("uid", F.expr("nullif(trim(CAST(user_id AS STRING)), '')"))
          .withColumn("taken_us", taken).withColumn("crawled_us", crawled)
          .withColumn("media", F.lower(F.trim(F.col("media_type").cast("string")))))
    future = now_us() + FUTURE_SLACK_US  # as schema.checked_posts_sql
    corrupt = F.col(CORRUPT).isNotNull() if CORRUPT in df.columns else F.lit(False)
    reason = (F.when(corrupt, "unparsable row").when(F.col("pid").isNull(), "missing post_id").when(F.col("uid").isNull(), "missing user_id")
              .when(F.col("taken_us").isNull(), "unparsable taken_at")
              .when(F.col("crawled_us").isNull(), "unparsable crawled_at")
              .when(F.col("taken_us") > future, "taken_at in the future")
              .when(F.col("crawled_us") > future, "crawled_at in the future")
              .when(F.col("taken_us") > F.col("crawled_us"), "taken_at after crawled_at"))
    for col in ("likes", "comments"):
        d = F.expr(f"try_cast({col} AS DOUBLE)")
        reason = (reason.when(F.col(col).isNull(), f"missing {col}")
                  .when(d.isNull() | F.isnan(d), f"non-numeric {col}").when(d < 0, f"negative {col}")
                  .when((d != F.floor(d)) | (d > 9e18), f"non-integer {col}"))
    reason = reason.when(F.col("media").isNull() | ~F.col("media").isin(*MEDIA_TYPES), "unknown media_type")
    for col in (c for c in OPTIONAL_COUNTS if c in df.columns):  # may be empty, never wrong
        d, given = F.expr(f"try_cast({col} AS DOUBLE)"), F.col(col).isNotNull()
        reason = (reason.when(given & (d.isNull() | F.isnan(d)), f"non-numeric {col}")
                  .when(given & (d < 0), f"negative {col}")
                  .when(given & ((d != F.floor(d)) | (d > 9e18)), f"non-integer {col}"))
    keep = [c for c in ("hashtags", "mentions") if c in df.columns]
    raw_cols = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COUNTS) if c in df.columns and c != "caption"]
    if CORRUPT in df.columns:
        raw_cols.append(CORRUPT)
    raw = F.to_json(F.struct(*[F.col(c).cast("string").alias(c) for c in raw_cols]))
    return df.select(
        F.col("pid").alias("post_id"), F.col("uid").alias("user_id"), "taken_us", "crawled_us",
        F.col("media").alias("media_type"),
        F.expr("try_cast(try_cast(likes AS DOUBLE) AS BIGINT)").alias("likes"),
        F.expr("try_cast(try_cast(comments AS DOUBLE) AS BIGINT)").alias("comments"),
        F.coalesce(F.col("caption").cast("string"), F.lit("")).alias("caption_s"), *keep,
        reason.alias("reason"), F.col("filename").alias("source_file"),
        F.when(reason.isNotNull(), raw).alias("raw_row"))


def _tags(F, df, col: str, regex: str):
    from_caption = F.regexp_extract_all(F.lower("caption_s"), F.lit(regex), 1)
    if col not in df.columns:
        return from_caption
    if df.schema[col].dataType.simpleString().startswith("array"):
        given = F.filter(F.transform(col, lambda x: F.lower(F.trim(F.regexp_replace(F.trim(x.cast("string")), "^[#@]+", "")))),
                         lambda x: x != "")
    else:
        given = F.regexp_extract_all(F.lower(F.col(col).cast("string")), F.lit(GIVEN_TAG_RE), 0)
    return F.coalesce(given, from_caption)


def _features(df):
    from pyspark.sql import functions as F

    df = (df.withColumn("tag_list", _tags(F, df, "hashtags", HASHTAG_RE))
          .withColumn("mention_list", _tags(F, df, "mentions", MENTION_RE))
          .withColumn("text_only", F.regexp_replace("caption_s", f"{HASHTAG_RE}|{MENTION_RE}", " ")))
    return (df.withColumn("tag_key", F.array_join(F.array_sort("tag_list"), " "))
            .withColumn("mention_key", F.array_join(F.array_sort("mention_list"), " "))
            .withColumn("n_hashtags", F.size("tag_list")).withColumn("n_mentions", F.size("mention_list"))
            .withColumn("n_words", F.size(F.regexp_extract_all("text_only", F.lit(WORD_TOKEN_RE), 0)))
            .withColumn("no_caption", (F.trim("text_only") == "") & (F.size("tag_list") == 0)
                        & (F.size("mention_list") == 0)))


def build_pairs_spark(posts, out_dir=None, *, rules: RuleConfig, crawled_at=None, seed: int = 0, val=None,
                      test=None, split_by_user: bool = False, master: str | None = None,
                      conf: dict[str, str] | None = None, spark=None) -> B.BuildResult:
    """The Spark engine of ``build.build_pairs`` (same outputs, same pair set as DuckDB's), in
    ``spark`` or :func:`get_spark`'s session (``master`` and ``conf`` apply when it starts one)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cfg = rules
    start = time.perf_counter()
    spark = spark or get_spark(master, conf)
    raw, where = _read(spark, posts)
    check_required_columns(raw.columns, crawled_at=crawled_at, where=where)
    checked = _checked(raw, crawled_at).cache()
    valid = checked.where(F.col("reason").isNull())
    # The same precedence as the DuckDB engine: schema.DUP_ORDER, read as Spark columns.
    order = [F.col(c.removesuffix(" DESC")).desc() if c.endswith(" DESC") else F.col(c) for c in DUP_ORDER.split(", ")]
    ranked = valid.withColumn("rn", F.row_number().over(Window.partitionBy("post_id").orderBy(*order)))
    posts_ok = ranked.where("rn = 1").drop("rn", "reason", "source_file", "raw_row").cache()
    losers = ranked.where("rn > 1").select(F.lit("duplicate post_id").alias("reason"), "post_id", "user_id",
                                           "source_file", F.lit(None).cast("string").alias("raw_row"))
    rejects = checked.where(F.col("reason").isNotNull()).select("reason", "post_id", "user_id", "source_file", "raw_row")
    rejected = rejects.unionByName(losers).toPandas()
    counts = rejected["reason"].value_counts().to_dict()
    summary = PostsSummary(rows=checked.count(), valid=posts_ok.count(),
                           rejected={r: int(counts[r]) for r in REJECT_REASONS if r in counts})
    if out_dir is not None:
        with atomic_path(Path(out_dir) / "rejects.csv") as tmp:
            frame_to_csv(rejected.sort_values(["reason", "post_id"], na_position="first"), tmp)

    rule = F.expr(B.post_rule_sql(cfg))
    ruled = posts_ok.withColumn("fails", rule)
    funnel, passing = B.rule_funnel({r["fails"]: r["count"] for r in ruled.groupBy("fails").count().collect()})
    featured = _features(ruled.where(F.col("fails").isNull()))
    eligible = featured.where(F.col("n_words") <= int(cfg.max_caption_words)).cache()
    n_eligible = eligible.count()
    funnel["caption_too_long"] = passing - n_eligible

    w, bucket = B.window_us(cfg), max(B.window_us(cfg), 1)
    e = eligible.withColumn("bucket", F.expr(f"taken_us div {bucket}"))  # integer division, as in DuckDB
    shifted = (e.withColumn("d", F.explode(F.array(F.lit(-1), F.lit(0), F.lit(1))))
               .withColumn("join_bucket", F.col("bucket") + F.col("d")))
    a, b = e.alias("a"), shifted.alias("b")
    cond = [F.col(f"a.{k}") == F.col(f"b.{k}") for k in B.pair_key_columns(cfg)]
    cond.append(F.col("a.bucket") == F.col("b.join_bucket"))
    dt = F.abs(F.col("a.taken_us") - F.col("b.taken_us"))
    cands = (a.join(b, cond).where((F.col("a.likes") > F.col("b.likes"))
                                   & (F.log(F.col("a.likes")) - F.log(F.col("b.likes")) >= F.lit(B.min_ln_gap(cfg)))
                                   & (dt <= F.lit(w)))
             .select(F.col("a.user_id").alias("user_id"), F.col("a.post_id").alias("high_id"),
                     F.col("b.post_id").alias("low_id"), dt.alias("dt_us"),
                     *[F.col(f"a.{c}").alias(f"{c}_high") for c in IMAGE_COLUMNS],
                     *[F.col(f"b.{c}").alias(f"{c}_low") for c in IMAGE_COLUMNS])).cache()
    funnel["eligible_posts"] = int(n_eligible)
    cands.count()  # materialise the cache
    # candidates of the funnel: every same-key pair within the window, before the P >= T test
    funnel["candidate_pairs"] = int(a.join(b, cond).where((F.col("a.post_id") < F.col("b.post_id"))
                                                          & (dt <= F.lit(w))).count())

    def match_user(pdf: pd.DataFrame) -> pd.DataFrame:
        ids = np.unique(np.concatenate([pdf["high_id"].to_numpy(str), pdf["low_id"].to_numpy(str)]))
        hc = np.searchsorted(ids, pdf["high_id"].to_numpy(str))
        lc = np.searchsorted(ids, pdf["low_id"].to_numpy(str))
        sel, ds, p, n_ok = B.match_candidates(hc, lc, pdf["likes_high"], pdf["likes_low"], cfg)
        out = pdf.iloc[sel].copy()
        out["p"], out["delta_s"], out["delta_t_days"] = p, ds, out["dt_us"].to_numpy(np.float64) / DAY_US
        out["n_ok"] = n_ok
        return out[B.wide_columns() + ["n_ok"]]

    schema = ("high_id string, low_id string, user_id string, p double, delta_s double, delta_t_days double, "
              + ", ".join(f"{c}_{s} {'boolean' if c == 'no_caption' else 'bigint'}"
                          for c in IMAGE_COLUMNS for s in ("high", "low")) + ", n_ok bigint")
    wide = cands.groupBy("user_id").applyInPandas(match_user, schema).toPandas()
    # n_ok repeats per user on each selected row; a user with candidates always selects one.
    funnel["discriminable_pairs"] = int(wide.groupby("user_id")["n_ok"].first().sum()) if len(wide) else 0
    funnel["pairs"] = len(wide)
    for c in IMAGE_COLUMNS:
        for s in ("high", "low"):
            wide[f"{c}_{s}"] = wide[f"{c}_{s}"].astype(bool if c == "no_caption" else np.int64)
    for df in (checked, posts_ok, eligible, cands):
        df.unpersist()
    return B.finish_build(wide.drop(columns="n_ok"), cfg=cfg, out_dir=out_dir, seed=seed, val=val, test=test,
                          by_user=split_by_user, posts_summary=summary.to_dict(), funnel=funnel, engine="spark",
                          seconds=time.perf_counter() - start,
                          engine_info={"master": spark.sparkContext.master, "spark_version": spark.version})

