"""`iipa score --engine spark`: its options and its run (the library is :mod:`iipa.spark`).

Kept apart from ``score.py`` so that the local command stays as it was; nothing here
imports pyspark until the Spark engine runs.
"""

from __future__ import annotations

import argparse
import sys

from iipa.errors import IIPAError
from iipa.extras import require

ENGINES = ("local", "spark")
SPARK_ONLY = ("master", "conf", "overwrite", "resume")


def add_spark_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default): this process; spark: pyspark executors score through onnxruntime "
                        "and write a Parquet folder (--output); see README 'Scoring on Spark'")
    g.add_argument("--master", help="spark: master URL (default local[*]; under spark-submit, spark-submit's)")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="spark: a Spark setting, repeatable (e.g. spark.task.cpus=2: threads per task)")
    g.add_argument("--overwrite", action="store_true", help="spark: replace what --output holds")
    g.add_argument("--resume", action="store_true",
                   help="spark: add to --output only the paths it has no row for (scored or failed)")


def check_local(args: argparse.Namespace) -> None:
    given = [f"--{name}" for name in SPARK_ONLY if getattr(args, name)]
    if given:
        raise IIPAError(f"{', '.join(given)} only apply with --engine spark")


def _check_spark(args: argparse.Namespace) -> None:
    if not args.output:
        raise IIPAError("--engine spark needs --output DIR (a Parquet folder)")
    refused = {
        "--format": args.format not in (None, "parquet"),
        "--sort": args.sort != "none",
        "--runtime torch": args.runtime == "torch",
        "--optimize": args.optimize != "none",
        f"--precision {args.precision}": args.precision not in ("auto", "fp32"),
        f"--device {args.device}": args.device not in ("auto", "cpu"),
        "--workers (threads per task are spark.task.cpus: --conf spark.task.cpus=N)": args.workers is not None,
        "- (stdin)": "-" in args.inputs,
    }
    bad = [name for name, hit in refused.items() if hit]
    if bad:
        raise IIPAError(f"--engine spark scores on the CPU through onnxruntime into Parquet; "
                        f"not with {', '.join(bad)}")


def run_spark(args: argparse.Namespace) -> int:
    require("spark", "iipa score --engine spark")
    _check_spark(args)
    from iipa.modelcard import warn_before_scoring
    from iipa.progress import heartbeat
    from iipa.spark.score import score_to_parquet, ship_model
    from iipa.spark.session import get_session, parse_conf

    spark, created = get_session(args.master, parse_conf(args.conf))
    try:
        model = ship_model(spark, args.model)
        warn_before_scoring(model.model, "iipa score")
        with heartbeat("score on Spark"):  # Spark's own progress bar shows only on a terminal
            summary = score_to_parquet(args.inputs, args.output, model=model, crops=args.crops,
                                       batch_size=args.batch_size, max_pixels=args.max_pixels,
                                       max_bytes=args.max_bytes,
                                       recursive=not args.no_recursive, overwrite=args.overwrite,
                                       resume=args.resume, spark=spark)
    finally:
        if created:
            spark.stop()
    print(f"wrote {summary.written:,} rows to {summary.output} ({summary.rows:,} rows there now, "
          f"{summary.chunks} chunk(s))")
    if summary.failed:
        print(f"iipa score: {summary.failed:,} of {summary.rows:,} rows in {summary.output} could not be scored, "
              "e.g.:", file=sys.stderr)
        from iipa.fileio import printable

        for row in summary.examples:
            print(f"  {printable(row['path'])}: {row['error']}", file=sys.stderr)
        return 1
    return 0
