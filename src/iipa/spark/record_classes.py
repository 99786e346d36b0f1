"""``python -m iipa.spark.record_classes``: record the JVM's class-data archive ahead of time
(see :mod:`iipa.spark.classcache`), e.g. while a container image is built, so that the first
Spark session of a user's run maps it instead of recording it."""

from __future__ import annotations

import os
import sys
import tempfile

from iipa.spark import classcache
from iipa.spark.session import get_session


def record() -> None:
    """Start a local session that records an archive, run a few typical jobs, exit."""
    if not classcache.enabled():
        print(f"{classcache.ENV_SWITCH} is off: no archive recorded", file=sys.stderr)
        return
    key = classcache.archive_key()
    if key is None:
        print("no java or no pyspark found: no archive recorded", file=sys.stderr)
        return
    final = classcache.archive_path(key)
    if final.is_file():
        print(f"{final}: already there", file=sys.stderr)
        return
    if classcache.recording_elsewhere(key):  # no second JVM for nothing
        print(f"another process records {final} now: none recorded", file=sys.stderr)
        return
    spark, _ = get_session("local[1]", app="iipa-classcache")
    lock = classcache.lock_path(key)
    if not (lock.is_file() and lock.read_text().strip() == str(os.getpid())):  # its JVM records nothing
        print("another process records the archive now (or a JVM ran here already): none recorded", file=sys.stderr)
        return
    df = spark.range(1000).selectExpr("id", "id % 7 AS k", "CAST(id AS STRING) AS s", "timestamp_seconds(id) AS t")
    with tempfile.TemporaryDirectory() as tmp:  # the classes of the usual jobs: files, joins, windows, Arrow
        df.write.parquet(f"{tmp}/a.parquet")
        df = spark.read.parquet(f"{tmp}/a.parquet")
        df.groupBy("k").agg({"s": "count", "id": "max"}).collect()
        df.join(df.selectExpr("k", "id AS j"), "k").where("id < 10").selectExpr("row_number() OVER (ORDER BY j) AS r").count()
        df.mapInPandas(lambda batches: batches, df.schema).write.mode("overwrite").csv(f"{tmp}/b")
    print(f"recording the JVM's class-data archive into {final} (at exit)", file=sys.stderr)


if __name__ == "__main__":
    record()
