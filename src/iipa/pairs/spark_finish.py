"""The Spark engine's last steps: splits, statistics and files, without the pairs on the driver.

The splits are the DuckDB engine's (``splits.held_out_ranks`` / ``held_out_users``): the
driver draws which ranks (in ``high_id, low_id`` order) or which users are held out and
Spark joins that small table to the pairs. Table 1 comes from one aggregation. The pairs
table, the rejects and the statistics are written by Spark and Hadoop's ``FileSystem``
into the output folder (local or a URI), under the DuckDB engine's file names.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.csvsafe import FORMULA_PREFIXES
from iipa.errors import IIPAError
from iipa.fileio import plain
from iipa.pairs import engine as B
from iipa.pairs.rules import RuleConfig
from iipa.pairs.schema import REJECT_REASONS, PostsSummary
from iipa.pairs.spark_io import HadoopFS
from iipa.pairs.splits import held_out_ranks, held_out_users
from iipa.pairs.stats import stats_markdown, table1, write_stats
from iipa.pairs.table import PAIRS_COLUMNS
from iipa.pairs.uris import local_path

REJECT_COLUMNS = ("reason", "post_id", "user_id", "source_file", "raw_row")
# The CSV dialect the rejects are written in: RFC 4180 as pandas writes it, values untrimmed.
CSV_OUT = {"header": "true", "sep": ",", "quote": '"', "escape": '"', "lineSep": "\n",
           "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false"}


def summarise(checked, summary: PostsSummary) -> tuple[PostsSummary, int]:
    """Fill ``summary`` from the reasons of ``checked``; also the valid rows whose post_id an
    earlier row has (the duplicates, counted in the same job)."""
    from pyspark.sql import functions as F

    n_dup = 0
    # Distinct 64-bit hashes of the ids are cheaper to count than the ids: as many hashes as
    # rows proves the ids distinct; fewer (duplicates, or a hash collision) asks for the ids.
    rows = checked.groupBy("reason").agg(F.count(F.lit(1)), F.countDistinct(F.xxhash64("post_id"))).collect()
    for reason, n, ids in rows:
        summary.rows += n
        if reason is None:
            if ids < n:
                ids = checked.where(F.col("reason").isNull()).select(F.countDistinct("post_id")).first()[0]
            summary.valid += ids
            n_dup = n - ids
        else:
            summary.rejected[reason] = n
    if n_dup:
        summary.rejected["duplicate post_id"] = n_dup
    summary.rejected = {r: summary.rejected[r] for r in REJECT_REASONS if r in summary.rejected}
    return summary, n_dup


def check_remote_out(spark, out_dir: str, *, overwrite: bool) -> None:
    """Refuse a non-empty output folder on a Hadoop file system, unless ``overwrite``
    (``build.check_out_dir``'s rule for local folders)."""
    hfs = HadoopFS(spark)
    if not overwrite and not hfs.is_empty_or_missing(out_dir):
        raise IIPAError(f"--out {out_dir}: not empty; pass --overwrite to replace an earlier build's files")
    hfs.mkdirs(out_dir)


def _table1(spark_row, n: int) -> dict:
    """stats.table1's figures from the sums of :func:`_sums` (its formulas, summed by Spark)."""
    if n == 0:
        return table1(pd.DataFrame())
    r = spark_row.asDict()
    return {"pairs": n, "users": int(r["users"]), "avg_likes_per_image": r["likes"] / (2 * n),
            "avg_p": r["p"] / n, "avg_interval_days": r["dt"] / n, "share_no_hashtag": r["no_tag"] / (2 * n),
            "share_no_mention": r["no_mention"] / (2 * n), "share_no_caption": r["no_caption"] / (2 * n),
            "avg_caption_words": r["words"] / (2 * n)}


def _sums(F):
    def both(c, f=lambda x: x.cast("double")):
        return F.sum(f(F.col(f"{c}_high")) + f(F.col(f"{c}_low")))

    def zero(x):
        return (x == 0).cast("double")

    return [F.count("high_id").alias("n"), F.countDistinct("user_id").alias("users"), F.sum("n_ok").alias("n_ok"),
            F.sum("n_window").alias("n_window"),
            both("likes").alias("likes"), F.sum("p").alias("p"), F.sum("delta_t_days").alias("dt"),
            both("n_hashtags", zero).alias("no_tag"), both("n_mentions", zero).alias("no_mention"),
            both("no_caption").alias("no_caption"), both("n_words").alias("words")]


def _with_splits(spark, wide, n: int, *, val, test, seed: int, by_user: bool):
    """``wide`` with its ``split`` column, and the pairs per split."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if by_user:
        users = wide.groupBy("user_id").count().orderBy("user_id").collect()
        counts = np.array([r["count"] for r in users], dtype=np.int64)
        test_u, val_u = held_out_users(counts, val=val, test=test, seed=seed)
        held = [(users[i]["user_id"], "test") for i in test_u] + [(users[i]["user_id"], "val") for i in val_u]
        key, schema = "user_id", "user_id string, split string"
        sizes = {"test": int(counts[test_u].sum()), "val": int(counts[val_u].sum())}
    else:
        test_r, val_r = held_out_ranks(n, val=val, test=test, seed=seed)
        held = [(int(r), "test") for r in test_r] + [(int(r), "val") for r in val_r]
        # One ordered partition: the ranks are global (the pairs are written as one file anyway).
        wide = wide.withColumn("rank", F.row_number().over(Window.orderBy("high_id", "low_id")) - 1)
        key, schema = "rank", "rank int, split string"
        sizes = {"test": len(test_r), "val": len(val_r)}
    table = spark.createDataFrame(held, schema) if held else spark.createDataFrame([], schema)
    out = wide.join(F.broadcast(table), key, "left").withColumn("split", F.coalesce("split", F.lit("train")))
    return out, {"train": n - sizes["test"] - sizes["val"], "val": sizes["val"], "test": sizes["test"]}


def finish_spark(spark, wide, rejects, out_dir, *, cfg: RuleConfig, posts_summary: dict, funnel: dict,
                 seed: int, val, test, by_user: bool, start: float) -> B.BuildResult:
    """Splits, Table 1 and the files of the matched ``wide`` pairs (``engine.wide_columns`` and
    ``n_ok``): the Spark twin of ``engine.finish_build``. With no ``out_dir`` the pairs are
    collected (an API caller asked for them in memory). ``start``: the build's perf_counter."""
    from pyspark.sql import functions as F

    sums = wide.agg(*_sums(F)).first()
    n = int(sums["n"])
    funnel["candidate_pairs"] = int(sums["n_window"] or 0)
    funnel["discriminable_pairs"] = int(sums["n_ok"] or 0)
    funnel["pairs"] = n
    wide = wide.where(F.col("high_id").isNotNull())  # the matcher's count rows are not pairs
    split_wide, split_counts = _with_splits(spark, wide, n, val=val, test=test, seed=seed, by_user=by_user)
    pairs = split_wide.select(*PAIRS_COLUMNS).orderBy("high_id", "low_id")
    info = {"master": spark.sparkContext.master, "spark_version": spark.version}

    def stats():
        return B.build_stats(_table1(sums, n), split_counts, cfg=cfg, seed=seed, by_user=by_user,
                             posts_summary=posts_summary, funnel=funnel, engine="spark",
                             seconds=time.perf_counter() - start, engine_info=info)

    if out_dir is None:
        frame = pairs.toPandas()
        return B.BuildResult(pairs=frame, stats=stats())
    local = local_path(out_dir)
    names = B.output_names(local if local is not None else str(out_dir).rstrip("/"))
    hfs = HadoopFS(spark)
    hfs.write_single(pairs, names["pairs"], "parquet")
    if posts_summary["rejected_total"]:
        hfs.write_single(_neutralised(F, rejects.orderBy(*REJECT_COLUMNS)), names["rejects"], "csv", **CSV_OUT)
    else:  # no job to find that nothing was rejected: the counts said so
        hfs.write_text(names["rejects"], ",".join(REJECT_COLUMNS) + "\n")
    result = B.BuildResult(stats=stats(), paths={k: Path(v) if local is not None else v for k, v in names.items()})
    write_any_stats(hfs, result.stats, out_dir)
    return result


def write_any_stats(hfs: HadoopFS, stats: dict, out_dir) -> None:
    """stats.json and stats.md into a local folder (atomically) or a Hadoop URI."""
    local = local_path(out_dir)
    if local is not None:
        write_stats(stats, local)
        return
    names = B.output_names(str(out_dir).rstrip("/"))
    hfs.write_text(names["stats"], json.dumps(plain(stats), indent=2, ensure_ascii=False) + "\n")
    hfs.write_text(names["stats_md"], stats_markdown(stats))


def _neutralised(F, rejects):
    """``csvsafe``'s rule on every text cell: a spreadsheet must not run a reject as a formula."""
    def safe(c):
        return F.when(F.substring(c, 1, 1).isin(*FORMULA_PREFIXES), F.concat(F.lit("'"), c)).otherwise(F.col(c))

    return rejects.select(*[safe(c).alias(c) for c in REJECT_COLUMNS])
