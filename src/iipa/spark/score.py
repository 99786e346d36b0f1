"""Score on Spark (``iipa score --engine spark``): the driver's side.

The driver resolves the model to the bytes of an ONNX export (an ``.onnx`` file, the shipped
export of named weights, or a checkpoint exported here) and broadcasts them once; it lists
nothing itself except folders and globs: local ones as ``iipa score`` lists them
(:func:`iipa.inputs.expand_inputs`: the same rows, 0-byte files included, the same paths as
typed, relative or not, and the same warning naming the files that are not images), URIs
through Spark's file index (``hdfs://``, ``s3a://``, ``file:`` ...; its list of files stays
in the JVM). A table of paths (Parquet, CSV, text) is read by the executors, which also open
the images (:mod:`iipa.spark.partition`), so a missing file is an error row, never a failed
query, and the driver holds no per-image state for tables whatever the number of rows.

Results go to a Parquet folder (one file per task) in chunks of ``chunk_rows`` paths, each
committed by its own write: a run killed midway keeps its finished chunks, and ``resume``
skips every path that already has a row (scored or failed).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from iipa.errors import IIPAError
from iipa.images import IMAGE_EXTENSIONS
from iipa.inputpolicy import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from iipa.inputs import CSV_COLUMNS, expand_inputs, not_images
from iipa.spark.partition import (
    SCHEMA,
    PartitionOptions,
    local_path,
    model_file,
    read_remote,
    score_partition,
)

TABLE_KINDS = {".parquet": "parquet", ".csv": "csv", ".txt": "text", ".lst": "text", ".list": "text"}
# Images per task: ~30 s of one core's work (about 70 img/s), so the scorer's start-up
# (one onnxruntime session) is ~1 % and the last tasks leave few cores idle.
ROWS_PER_TASK = 2_000
CHUNK_ROWS = 200_000
_ABSOLUTE = r"^([A-Za-z][A-Za-z0-9+.-]*:|/)"
_IMAGE_NAME = r"(?i)\.(" + "|".join(e.lstrip(".") for e in IMAGE_EXTENSIONS) + r")$"
PATHS_SCHEMA = "path string, source string"  # as shown in the output; where an executor reads it
log = logging.getLogger("iipa.inputs")  # the logger of the local command's listing warnings


@dataclass
class ShippedModel:
    """The broadcast ONNX bytes, and the model as the driver loaded them (profile, reference, info)."""

    broadcast: Any
    model: Any
    size: int


@dataclass
class SparkScoreSummary:
    output: str
    written: int  # rows this run added
    rows: int  # rows in the output now
    failed: int  # error rows in the output now
    chunks: int
    examples: list[dict[str, Any]]  # a few error rows: path, error

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the model ---

def onnx_bytes(model: Any = None) -> bytes:
    """The ONNX export of ``model``: an ``.onnx`` file as it is (local or a URI), the ONNX file
    of its record (named weights' shipped export), else (a checkpoint, weights without an
    export, a PopularityNet) exported here with PyTorch."""
    from iipa.model.record import ModelRecord, resolve_model

    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        path = os.fspath(model)
        try:
            return Path(local_path(path)).read_bytes() if local_path(path) is not None else read_remote(path)
        except OSError as exc:
            raise IIPAError(f"--model {model}: cannot read it ({exc.strerror or exc})") from None
    record = model if isinstance(model, ModelRecord) else resolve_model(model)
    if record.onnx_file is not None:
        return Path(record.onnx_file).read_bytes()
    from iipa.model.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="iipa-spark-export-") as tmp:
        return export_onnx(record.load_torch(), Path(tmp) / "model.onnx").read_bytes()


def ship_model(spark: Any, model: Any = None) -> ShippedModel:
    """Open the export on the driver (a broken file fails here, once) and broadcast its bytes
    (``model`` already shipped: itself)."""
    from iipa.backends.onnxrt import open_session
    from iipa.model.record import resolve_model

    if isinstance(model, ShippedModel):
        return model
    data = onnx_bytes(model)
    path = model_file(data)
    open_session(path, threads=1)
    return ShippedModel(spark.sparkContext.broadcast(data), resolve_model(path), len(data))


# --- inputs ---

def read_paths(spark: Any, inputs: Sequence[str], *, recursive: bool = True) -> Any:
    """A ``path`` column (and ``source``, where an executor reads it) from tables
    (``.parquet``/``.csv``/``.txt``, read by the executors), folders and globs (image names
    only: local ones listed as ``iipa score`` lists them, URIs by Spark's file index)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise IIPAError("no inputs to score")
    frames = [_read_table(spark, spec, kind) if (kind := TABLE_KINDS.get(_suffix(spec))) else
              _list_images(spark, spec, recursive) for spec in inputs]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _suffix(spec: str) -> str:
    return os.path.splitext(spec.rstrip("/"))[1].lower()


def _read_table(spark: Any, spec: str, kind: str) -> Any:
    from pyspark.sql import functions as F

    try:
        if kind == "text":
            frame = spark.read.text(spec).select(F.trim("value").alias("path")).where(~F.col("path").startswith("#"))
        else:
            frame = spark.read.parquet(spec) if kind == "parquet" else spark.read.option("header", True).csv(spec)
            column = _path_column(frame, spec, kind)
            if column is None:  # a CSV list without a header: its first row is a path
                frame, column = spark.read.csv(spec), "_c0"
            frame = frame.select(F.trim(F.col(f"`{column}`").cast("string")).alias("path"))
    except IIPAError:
        raise
    except Exception as exc:  # AnalysisException: no such file, not Parquet, ...
        raise IIPAError(f"{spec}: cannot read it as a {kind} table ({_first_line(exc)})") from None
    # Relative paths are relative to the table's folder, as in a local `iipa score list.csv`.
    base = spec.rstrip("/").rpartition("/")[0] or "."
    base = base if local_path(base) is None else os.path.abspath(local_path(base))
    resolved = F.when(F.col("path").rlike(_ABSOLUTE), F.col("path")).otherwise(F.concat(F.lit(base + "/"), "path"))
    return frame.where(F.col("path").isNotNull() & (F.col("path") != "")).select(resolved.alias("path"),
                                                                                  resolved.alias("source"))


def _path_column(frame: Any, spec: str, kind: str) -> str | None:
    """The first of :data:`~iipa.inputs.CSV_COLUMNS` (any case); None for a CSV whose header
    is itself an image path (a list without a header)."""
    lowered = {c.strip().lower(): c for c in frame.columns}
    for name in CSV_COLUMNS:
        if name in lowered:
            return lowered[name]
    if kind == "csv" and frame.columns and frame.columns[0].lower().endswith(IMAGE_EXTENSIONS):
        return None
    raise IIPAError(f"{spec}: no path column ({', '.join(CSV_COLUMNS)}); its columns: {', '.join(frame.columns)}")


def _list_images(spark: Any, spec: str, recursive: bool) -> Any:
    if local_path(spec) is not None and not spec.startswith("file:") and "{" not in spec:
        return _list_local(spark, spec, recursive)
    return _list_uri(spark, spec, recursive)


def _list_local(spark: Any, spec: str, recursive: bool) -> Any:
    """A local folder, file or glob as ``iipa score`` lists it: every image file (0-byte ones
    too) by the path it prints, read by its absolute path."""
    if not os.path.lexists(spec) and not glob.glob(spec, recursive=True):
        raise IIPAError(f"{spec}: no such folder, file or matching files")
    rows = [(p, os.path.abspath(p)) for p in expand_inputs([spec], recursive=recursive)]
    return spark.createDataFrame(rows, PATHS_SCHEMA)


def _list_uri(spark: Any, spec: str, recursive: bool) -> Any:
    """A folder or glob URI, listed by Spark's file index: every file it holds (the
    ``binaryFile`` source itself skips 0-byte ones), image names only, the others named in
    one warning as ``iipa score`` names them."""
    from pyspark.sql import functions as F

    # Always recursive: without it Spark infers partition columns from sub-folder names (and
    # fails on files at several depths); --no-recursive filters below instead.
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    try:
        files = reader.load(spec)._jdf.inputFiles()  # a Java String[]: it stays in the JVM
    except Exception as exc:
        raise IIPAError(f"{spec}: no such folder, file or matching files ({_first_line(exc)})") from None
    listed = _files_frame(spark, files)
    folder = _qualified(spark, spec) if not recursive and not any(ch in spec for ch in "*?[{") else None
    listed = listed.mapInPandas(partial(_decoded_paths, folder=folder), PATHS_SCHEMA)
    others = listed.where(~F.col("path").rlike(_IMAGE_NAME))
    named = [r["path"] for r in others.limit(5).collect()]
    if named:
        log.warning(not_images(local_path(spec) or spec, named, count=others.count()))
    return listed.where(F.col("path").rlike(_IMAGE_NAME))


def _files_frame(spark: Any, files: Any) -> Any:
    """A ``path`` DataFrame of a Java ``String[]``, built in the JVM (Scala 2.13's ArraySeq
    wraps the array without a copy); where that is missing (Scala 2.12), through Python."""
    jvm = spark.sparkContext._jvm
    try:
        seq = jvm.scala.collection.immutable.ArraySeq.unsafeWrapArray(files)
        jdf = spark._jsparkSession.createDataset(seq, jvm.org.apache.spark.sql.Encoders.STRING()).toDF("path")
    except Exception:  # noqa: BLE001 - py4j's error for a class or method the JVM lacks
        return spark.createDataFrame([(f,) for f in files], "path string")
    try:
        from pyspark.sql.classic.dataframe import DataFrame
    except ImportError:  # pyspark 3.5
        from pyspark.sql import DataFrame
    return DataFrame(jdf, spark)


def _decoded_paths(batches: Any, folder: str | None) -> Any:
    """``mapInPandas`` body: the index's URIs (percent-encoded) as paths, local files as local
    paths the way ``iipa score`` prints them; with ``folder``, only the files directly in it."""
    for batch in batches:
        paths = [urllib.parse.unquote(p) for p in batch["path"]]
        if folder is not None:
            paths = [p for p in paths if p.rsplit("/", 1)[0] == folder]
        paths = [local_path(p) or p for p in paths]
        yield pd.DataFrame({"path": paths, "source": paths})


def _qualified(spark: Any, spec: str) -> str:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(spec)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).makeQualified(path).toString().rstrip("/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"


# --- scoring ---

def score_frame(frame: Any, *, model: Any = None, path_column: str = "path", crops: int | None = None,
                batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                partitions: int | None = None) -> Any:
    """A Spark DataFrame of paths -> a lazy DataFrame (path, score, scaled, level, error), one
    row per row with a path, in no particular order. ``partitions``: tasks to spread the rows over
    (default: about :data:`ROWS_PER_TASK` rows each, at least one per core; counting the
    rows is a Spark job)."""
    from pyspark.sql import functions as F

    if path_column not in frame.columns:
        raise IIPAError(f"no column {path_column!r} in the frame; its columns: {', '.join(frame.columns)}")
    spark = frame.sparkSession
    shipped = ship_model(spark, model)
    paths = frame.select(F.col(f"`{path_column}`").cast("string").alias("path")).where(F.col("path").isNotNull())
    if partitions is None:
        partitions = task_count(spark, paths.count())
    options = PartitionOptions(crops=crops, batch_size=batch_size, max_pixels=max_pixels, max_bytes=max_bytes)
    return _score(paths, shipped, options, partitions)


def task_count(spark: Any, rows: float) -> int:
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / ROWS_PER_TASK), 1)


def _score(paths: Any, shipped: ShippedModel, options: PartitionOptions, partitions: int, *,
           distinct: bool = False) -> Any:
    from iipa.profiles import CROPS

    if options.crops is None:  # the model's default views (recorded in its profile)
        options = dataclasses.replace(options, crops=shipped.model.crops)
    if options.crops not in CROPS:
        raise IIPAError(f"crops must be one of {', '.join(map(str, CROPS))}, not {options.crops}")
    body = partial(score_partition, model=shipped.broadcast, options=options)
    # Round robin after the deduplication: hashing paths into tasks left them up to ~25 %
    # apart at a few hundred images (the job waits for the largest). Shuffles of paths are
    # cheap next to decoding the images.
    return (paths.distinct() if distinct else paths).repartition(partitions).mapInPandas(body, SCHEMA)


def score_to_parquet(inputs: Sequence[str] | Any, output: str, *, model: Any = None, crops: int | None = None,
                     batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                     recursive: bool = True,
                     overwrite: bool = False, resume: bool = False, chunk_rows: int = CHUNK_ROWS,
                     spark: Any = None) -> SparkScoreSummary:
    """Score ``inputs`` (paths as :func:`read_paths` takes them, or a DataFrame with a ``path``
    column) into the Parquet folder ``output``. A folder that holds files is refused unless
    ``overwrite`` (replace it) or ``resume`` (add the paths it has no row for)."""
    from pyspark.sql import functions as F

    from iipa.spark.session import get_session

    if overwrite and resume:
        raise IIPAError("--overwrite and --resume exclude each other")
    if chunk_rows < 1:
        raise IIPAError(f"chunk_rows must be at least 1, got {chunk_rows}")
    spark = spark or get_session()[0]
    existing = _output_files(spark, output)
    if existing and not (overwrite or resume):
        raise IIPAError(f"--output {output}: not empty ({', '.join(existing[:3])}, ...); pass --overwrite to "
                        "replace it or --resume to score only the paths it has no row for")
    owned = not isinstance(model, ShippedModel)
    shipped = ship_model(spark, model)
    paths = (read_paths(spark, inputs, recursive=recursive) if isinstance(inputs, (str, list, tuple))
             else inputs.select(F.col("path").cast("string")))
    before = 0
    if resume and existing:
        done = _read_output(spark, output)
        before = done.count()
        paths = paths.join(done.select("path"), "path", "left_anti")
    options = PartitionOptions(crops=crops, batch_size=batch_size, max_pixels=max_pixels, max_bytes=max_bytes)
    try:
        todo = paths.count()  # duplicates included: an upper bound, no shuffle
        chunks = max(1, math.ceil(todo / chunk_rows))
        for k in range(chunks):
            part = paths if chunks == 1 else paths.where(F.expr(f"pmod(xxhash64(path), {chunks})") == k)
            # One row per path: what resume keys on.
            scored = _score(part, shipped, options, task_count(spark, todo / chunks), distinct=True)
            scored.write.mode("overwrite" if overwrite and k == 0 else "append").parquet(output)
    finally:
        if owned:
            shipped.broadcast.unpersist()
    return _summary(spark, output, before=before, chunks=chunks)


def _output_files(spark: Any, output: str) -> list[str]:
    """Names in ``output`` besides Spark's ``_``/``.`` bookkeeping ([] when it does not exist)."""
    jvm, jsc = spark.sparkContext._jvm, spark.sparkContext._jsc
    path = jvm.org.apache.hadoop.fs.Path(output)
    fs = path.getFileSystem(jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    if fs.getFileStatus(path).isFile():
        raise IIPAError(f"--output {output}: is a file; Spark writes a folder of Parquet files")
    names = [s.getPath().getName() for s in fs.listStatus(path)]
    return sorted(n for n in names if not n.startswith(("_", ".")))


def _read_output(spark: Any, output: str) -> Any:
    try:
        frame = spark.read.parquet(output)
    except Exception as exc:
        raise IIPAError(f"--output {output}: not an earlier scores folder ({_first_line(exc)})") from None
    if "path" not in frame.columns:
        raise IIPAError(f"--output {output}: not an earlier scores folder (no path column)")
    return frame


def _summary(spark: Any, output: str, *, before: int, chunks: int) -> SparkScoreSummary:
    from pyspark.sql import functions as F

    frame = _read_output(spark, output)
    totals = frame.agg(F.count(F.lit(1)).alias("rows"), F.count("error").alias("failed")).first()
    examples = [r.asDict() for r in frame.where(F.col("error").isNotNull()).select("path", "error").limit(20).collect()]
    rows = int(totals["rows"])
    return SparkScoreSummary(output, rows - before, rows, int(totals["failed"]), chunks, examples)
