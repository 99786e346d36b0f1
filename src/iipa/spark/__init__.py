"""Scoring on Spark: the same scores as ``iipa score``, over a cluster's executors.

``score_frame(df)`` scores a DataFrame's ``path`` column lazily; ``score_to_parquet`` is
``iipa score --engine spark``: tables, folders or globs in, a Parquet folder out, with
``overwrite``/``resume``. pyspark is imported when these run, not here (executors import
this package too, and import no torch). The PDIP builder's Spark engine is
:mod:`iipa.pairs.spark`.
"""

from iipa.spark.score import SparkScoreSummary, read_paths, score_frame, score_to_parquet

__all__ = ["SparkScoreSummary", "read_paths", "score_frame", "score_to_parquet"]
