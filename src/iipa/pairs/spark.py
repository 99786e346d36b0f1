"""The PDIP build on Spark (``--engine spark``): the same stages as build.py, in pyspark.

Posts come from any Hadoop file system (spark_io.py): validation, the per-post rules and
the bounded candidate self-join run as Spark DataFrame operations with the same regular
expressions and SQL rules as the DuckDB engine. The P ≥ T test and the greedy matching run
in ``mapInPandas`` over partitions of whole users (repartitioned by user, sorted within each
partition) with the very same numpy function (``engine.match_candidates``): candidate pairs
never cross users and the matching order only compares ΔS and post ids, so matching any set
of whole users at once yields exactly the global matching, and the pair set equals the
DuckDB engine's. The splits, Table 1 and the output files follow in spark_finish.py; only
counts and small per-user tables reach the driver.

Runs in the active Spark session (``spark-submit``'s, a notebook's), else in a new one:
``local[*]`` unless ``master`` says otherwise (:func:`get_spark`).
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pandas as pd

from iipa.pairs import engine as B
from iipa.pairs.rules import DAY_US, RuleConfig
from iipa.pairs.schema import (
    DUP_ORDER,
    FUTURE_SLACK_US,
    MEDIA_TYPES,
    OPTIONAL_COUNTS,
    REQUIRED_COLUMNS,
    PostsSummary,
    check_required_columns,
    now_us,
)
from iipa.pairs.spark_finish import check_remote_out, finish_spark, summarise
from iipa.pairs.spark_io import CORRUPT, read_posts
from iipa.pairs.stats import IMAGE_COLUMNS
from iipa.pairs.tags import GIVEN_TAG_RE, HASHTAG_RE, MENTION_RE, WORD_TOKEN_RE
from iipa.pairs.uris import local_path

# The pairs build's own defaults (--conf overrides them): a few shuffle partitions suit the
# one-machine crawls most builds are (Spark's 200 would be mostly empty tasks), Arrow for the
# matching's pandas transfers (mapInPandas), and a hash join for the candidates' self-join
# (no sort of both sides; the matcher's input is sorted by user anyway).
PAIRS_CONF = {"spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.pyspark.enabled": "true",
              "spark.sql.join.preferSortMergeJoin": "false"}


def get_spark(master: str | None = None, conf: dict[str, str] | None = None):
    """The active Spark session, or a new one (``local[*]`` unless ``master``; UTC, no UI;
    :data:`PAIRS_CONF`, then ``conf`` over it): see :func:`iipa.spark.session.get_session`.

    Unlike scoring's, a local session keeps the JVM's own JIT and collector: the build's
    joins and window run in the JVM, where C2 pays (1 M posts, local[*] on 2 cores: 60-61 s with
    them, 64-66 s with scoring's C1-only serial-GC JVM; benchmarks/pairs.py --engine spark)."""
    from iipa.spark.session import get_session

    return get_session(master, conf, app="iipa-pairs", defaults=PAIRS_CONF, local_java=False)[0]


def _time_us(F, df, col: str):
    """Microseconds since the epoch, as schema._time_expr gives them in DuckDB: timestamps as
    they are (naive ones and dates as UTC), numbers as Unix seconds, text as ISO 8601 or
    seconds; NULL (a reject) if unparsable or out of range."""
    from pyspark.sql import types as T

    kind = df.schema[col].dataType

    def seconds(d):  # out-of-range seconds become a reject, not an error that stops the build
        return F.when(F.abs(d) < 1e11, F.unix_micros(F.timestamp_seconds(d)))

    if isinstance(kind, T.TimestampType):
        return F.unix_micros(F.col(col))
    if isinstance(kind, (T.TimestampNTZType, T.DateType)):  # wall-clock time read as UTC
        return F.expr(f"timestampdiff(MICROSECOND, TIMESTAMP_NTZ'1970-01-01 00:00:00', "
                      f"CAST(`{col}` AS TIMESTAMP_NTZ))")
    if isinstance(kind, T.NumericType):
        return seconds(F.col(col).cast("double"))
    return F.coalesce(F.unix_micros(F.expr(f"try_cast(CAST(`{col}` AS STRING) AS TIMESTAMP)")),
                      seconds(F.expr(f"try_cast(CAST(`{col}` AS STRING) AS DOUBLE)")))


def _checked(df, crawled_at):
    from pyspark.sql import functions as F

    taken = _time_us(F, df, "taken_at")
    crawled = _time_us(F, df, "crawled_at") if "crawled_at" in df.columns else F.lit(None).cast("bigint")
    if crawled_at is not None:
        crawled = F.coalesce(crawled, F.lit(int(pd.Timestamp(crawled_at, tz="UTC").value // 1000)))
    df = df.withColumns({"pid": F.expr("nullif(trim(CAST(post_id AS STRING)), '')"),
                         "uid": F.expr("nullif(trim(CAST(user_id AS STRING)), '')"),
                         "taken_us": taken, "crawled_us": crawled,
                         "media": F.lower(F.trim(F.col("media_type").cast("string")))})
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
    # As in DuckDB (schema._tags_expr): no regex for the many captions without the sigil.
    from_caption = F.when(F.instr("caption_s", regex[0]) > 0,
                          F.regexp_extract_all(F.lower("caption_s"), F.lit(regex), 1)
                          ).otherwise(F.array().cast("array<string>"))
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
          .withColumn("text_only", F.when((F.instr("caption_s", "#") > 0) | (F.instr("caption_s", "@") > 0),
                                          F.regexp_replace("caption_s", f"{HASHTAG_RE}|{MENTION_RE}", " "))
                      .otherwise(F.col("caption_s"))))
    return (df.withColumn("tag_key", F.array_join(F.array_sort("tag_list"), " "))
            .withColumn("mention_key", F.array_join(F.array_sort("mention_list"), " "))
            .withColumn("n_hashtags", F.size("tag_list")).withColumn("n_mentions", F.size("mention_list"))
            .withColumn("n_words", F.size(F.regexp_extract_all("text_only", F.lit(WORD_TOKEN_RE), 0)))
            .withColumn("no_caption", (F.trim("text_only") == "") & (F.size("tag_list") == 0)
                        & (F.size("mention_list") == 0)))


def _dedup(valid, n_dup: int):
    """(posts with one row per post_id, the duplicates' losers) by schema.DUP_ORDER, as DuckDB
    does; ``n_dup``: rows beyond the first of their post_id (summarise counted them). Only
    the rows of a duplicated id are ranked (no shuffle of every row through a window), and
    the usually few duplicated ids are broadcast."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if n_dup == 0:
        return valid, None
    dup_ids = valid.groupBy("post_id").count().where("count > 1").select("post_id")
    ids = F.broadcast(dup_ids) if n_dup <= 1_000_000 else dup_ids
    order = [F.col(c.removesuffix(" DESC")).desc() if c.endswith(" DESC") else F.col(c) for c in DUP_ORDER.split(", ")]
    ranked = valid.join(ids, "post_id", "left_semi").withColumn(
        "rn", F.row_number().over(Window.partitionBy("post_id").orderBy(*order)))
    kept = valid.join(ids, "post_id", "left_anti").unionByName(ranked.where("rn = 1").drop("rn"))
    losers = ranked.where("rn > 1").select(F.lit("duplicate post_id").alias("reason"), "post_id", "user_id",
                                           "source_file", F.lit(None).cast("string").alias("raw_row"))
    return kept, losers


def _candidates(eligible, cfg: RuleConfig):
    """The bounded self-join (build.candidate_sql's, in Spark) in one pass: every unordered
    same-key pair within the window once (the funnel's candidate pairs: the matcher counts
    them), flagged ``cand`` where it passes the likes pre-filter, higher likes first (equal
    likes: lower id first, never a candidate)."""
    from pyspark.sql import functions as F

    w, bucket = B.window_us(cfg), max(B.window_us(cfg), 1)
    keys = B.pair_key_columns(cfg)
    slim = eligible.select("post_id", *keys, "taken_us", *IMAGE_COLUMNS).withColumn(
        "bucket", F.expr(f"taken_us div {bucket}"))  # integer division, as in DuckDB
    shifted = (slim.withColumn("d", F.explode(F.array(F.lit(-1), F.lit(0), F.lit(1))))
               .withColumn("join_bucket", F.col("bucket") + F.col("d")).drop("d"))
    a, b = slim.alias("a"), shifted.alias("b")
    cond = [F.col(f"a.{k}") == F.col(f"b.{k}") for k in keys] + [F.col("a.bucket") == F.col("b.join_bucket")]
    dt = F.abs(F.col("a.taken_us") - F.col("b.taken_us"))
    la, lb = F.col("a.likes"), F.col("b.likes")
    once = (la > lb) | ((la == lb) & (F.col("a.post_id") < F.col("b.post_id")))
    cand = (la > lb) & (F.log(la) - F.log(lb) >= F.lit(B.min_ln_gap(cfg)))
    return (a.join(b, cond).where(once & (dt <= F.lit(w)))
            .select(F.col("a.user_id").alias("user_id"), F.col("a.post_id").alias("high_id"),
                    F.col("b.post_id").alias("low_id"), dt.alias("dt_us"), cand.alias("cand"),
                    *[F.col(f"a.{c}").alias(f"{c}_high") for c in IMAGE_COLUMNS],
                    *[F.col(f"b.{c}").alias(f"{c}_low") for c in IMAGE_COLUMNS]))


def _matcher(cfg: RuleConfig):
    """The ``mapInPandas`` function: a partition's in-window pairs, sorted by user, arrive in
    Arrow batches; each run of whole users (all but the last user of the batches so far) is
    matched at once with ``engine.match_candidates``. Each run also yields one count row
    (``high_id`` NULL): its in-window pairs (``n_window``) and candidates with P ≥ T (``n_ok``)."""
    columns = [*B.wide_columns(), "n_ok", "n_window"]

    def match(run: pd.DataFrame) -> pd.DataFrame:
        pdf = run[run["cand"].to_numpy(bool)]
        ids = np.unique(np.concatenate([pdf["high_id"].to_numpy(str), pdf["low_id"].to_numpy(str)]))
        hc = np.searchsorted(ids, pdf["high_id"].to_numpy(str))
        lc = np.searchsorted(ids, pdf["low_id"].to_numpy(str))
        sel, ds, p, n_ok = B.match_candidates(hc, lc, pdf["likes_high"], pdf["likes_low"], cfg)
        chosen = {"p": p, "delta_s": ds, "delta_t_days": pdf["dt_us"].to_numpy(np.float64)[sel] / DAY_US,
                  "n_ok": np.zeros(len(sel), np.int64), "n_window": np.zeros(len(sel), np.int64)}
        last = {"n_ok": n_ok, "n_window": len(run)}  # the count row: NULL in every other column
        # Object arrays with None: Arrow takes them for any column type (pandas' own string
        # arrays may arrive chunked, which mapInPandas refuses).
        return pd.DataFrame({c: np.append((chosen[c] if c in chosen else pdf[c].to_numpy()[sel]).astype(object),
                                          last.get(c)) for c in columns})

    def per_partition(batches):
        held = None
        for batch in batches:
            held = batch if held is None else pd.concat([held, batch], ignore_index=True)
            users = held["user_id"].to_numpy()
            cut = int(np.searchsorted(users, users[-1], side="left"))  # the last user may go on
            if cut > 0:
                yield match(held.iloc[:cut])
                held = held.iloc[cut:].reset_index(drop=True)
        if held is not None and len(held):
            yield match(held)

    return per_partition


def _eligible(posts_ok, cfg: RuleConfig, keep):
    """(the cached eligible posts, the rules' funnel): the funnel's counts ride on the job
    that caches the posts (an observation, not a job of their own)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    rules_seen = Observation("iipa-post-rules")
    ruled = posts_ok.withColumn("fails", F.expr(B.post_rule_sql(cfg))).observe(
        rules_seen, *[F.count(F.when(F.col("fails") == r, 1)).alias(r) for r in B.POST_RULES],
        F.count(F.when(F.col("fails").isNull(), 1)).alias("passing"))
    featured = _features(ruled.where(F.col("fails").isNull()))
    eligible = keep(featured.where(F.col("n_words") <= int(cfg.max_caption_words))
                    .select("post_id", *B.pair_key_columns(cfg), "taken_us", *IMAGE_COLUMNS))
    n_eligible = eligible.count()
    seen = rules_seen.get
    funnel, passing = B.rule_funnel({**{r: seen[r] for r in B.POST_RULES}, None: seen["passing"]})
    funnel["caption_too_long"] = passing - n_eligible
    funnel["eligible_posts"] = int(n_eligible)
    return eligible, funnel


def _warm_python_workers(spark, parts: int) -> threading.Thread:
    """Start the matcher's Python workers (one per task slot, up to ``parts``) in a job of
    their own, in a thread (Spark runs the jobs of several threads at once): a worker's start and its imports (pandas,
    pyarrow, numpy, this package) take ~1 s of a core, and cost the matching job 2-3 s of
    its wall time on a fresh session; here they overlap the driver's planning of the first
    jobs. Workers are reused (Spark's default), so the matching finds them ready; a failure
    here only loses that."""
    def run():
        with contextlib.suppress(Exception):
            spark.range(0, parts, 1, parts).mapInPandas(_imports, "id long").collect()

    thread = threading.Thread(target=run, name="iipa-warm-python-workers", daemon=True)
    thread.start()
    return thread


def _imports(batches):
    from iipa.pairs import engine  # noqa: F401 - the matcher's imports, done ahead

    yield from batches


def _wide_schema() -> str:
    return ("high_id string, low_id string, user_id string, p double, delta_s double, delta_t_days double, "
            + ", ".join(f"{c}_{s} {'boolean' if c == 'no_caption' else 'bigint'}"
                        for c in IMAGE_COLUMNS for s in ("high", "low")) + ", n_ok bigint, n_window bigint")


def build_pairs_spark(posts, out_dir=None, *, rules: RuleConfig, crawled_at=None, seed: int = 0, val=None,
                      test=None, split_by_user: bool = False, master: str | None = None,
                      conf: dict[str, str] | None = None, spark=None, overwrite: bool = False) -> B.BuildResult:
    """The Spark engine of ``build.build_pairs`` (same outputs, same pair set as DuckDB's), in
    ``spark`` or :func:`get_spark`'s session (``master`` and ``conf`` apply when it starts one).
    ``out_dir``: a local folder or a Hadoop URI (``overwrite``: see spark_finish)."""
    cfg = rules
    start = time.perf_counter()
    spark = spark or get_spark(master, conf)
    if out_dir is not None and local_path(out_dir) is None:
        check_remote_out(spark, str(out_dir), overwrite=overwrite)
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # naive ISO text is UTC, as in DuckDB
    cached: list = []
    try:
        return _build(spark, posts, out_dir, cfg, crawled_at, cached,
                      finish={"seed": seed, "val": val, "test": test, "by_user": split_by_user, "start": start})
    finally:
        for df in cached:
            df.unpersist()
        spark.conf.set("spark.sql.session.timeZone", zone)


def _build(spark, posts, out_dir, cfg: RuleConfig, crawled_at, cached: list, *, finish: dict):
    from pyspark.sql import functions as F

    def keep(df):
        cached.append(df.cache())
        return df

    parts = max(1, min(int(spark.conf.get("spark.sql.shuffle.partitions")), spark.sparkContext.defaultParallelism))
    warm = _warm_python_workers(spark, parts)
    raw, where = read_posts(spark, posts)
    check_required_columns(raw.columns, crawled_at=crawled_at, where=where)
    checked = _checked(raw, crawled_at)
    summary, n_dup = summarise(checked, PostsSummary())
    posts_ok, losers = _dedup(checked.where(F.col("reason").isNull()).drop("reason", "raw_row"), n_dup)
    eligible, funnel = _eligible(posts_ok.drop("source_file"), cfg, keep)
    rejects = checked.where(F.col("reason").isNotNull()).select("reason", "post_id", "user_id", "source_file", "raw_row")
    if losers is not None:
        rejects = rejects.unionByName(losers)
    # Whole users per partition, each user's rows together (the matcher cuts between users);
    # no more partitions than cores: each task pays for a Python worker's Arrow round trip.
    warm.join()
    in_window = _candidates(eligible, cfg).repartition(parts, "user_id").sortWithinPartitions("user_id")
    wide = keep(in_window.mapInPandas(_matcher(cfg), _wide_schema()))
    return finish_spark(spark, wide, rejects, out_dir, cfg=cfg, posts_summary=summary.to_dict(), funnel=funnel,
                        **finish)
