"""Where the Spark engine's posts come from and its outputs go: any Hadoop file system.

Posts are given as paths or URIs (``hdfs://``, ``s3a://``, ``gs://``, ``file://``, a plain
path on the cluster's default file system, a folder, a Hadoop glob); they are listed with
Hadoop's ``FileSystem`` in the driver's JVM and read by Spark's own readers on the
executors, never opened by the driver's Python. A folder yields its Parquet, CSV and JSON
lines files recursively (names starting with ``_`` or ``.`` skipped, as Spark does: a
``_SUCCESS`` marker, ``.crc`` files). The outputs (the pairs table, the rejects, the
statistics) are written to the output folder through the same ``FileSystem``, each as one
file under the name the DuckDB engine gives it.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Sequence
from urllib.parse import unquote

import pandas as pd

from iipa.errors import IIPAError
from iipa.fileio import write_text
from iipa.pairs.schema import SUFFIXES
from iipa.pairs.uris import is_uri, local_path

CORRUPT = "_corrupt_record"  # Spark's column for a record its CSV/JSON reader could not parse
GLOB_CHARS = "*?[{"


def suffix_kind(name: str) -> str | None:
    """``parquet``, ``csv`` or ``json`` by the file name's suffix (schema.SUFFIXES), else None."""
    return SUFFIXES.get(os.path.splitext(name)[1].lower())


class HadoopFS:
    """The driver JVM's Hadoop ``FileSystem`` calls the engine needs, by URI."""

    def __init__(self, spark):
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()

    def path(self, spec: str | os.PathLike):
        """A Hadoop Path: a URI as it is, a plain path as the local file it names (as for the
        DuckDB engine; a cluster's storage is named by its URI)."""
        if not is_uri(spec):
            return self.jvm.org.apache.hadoop.fs.Path(f"file:{os.path.abspath(spec)}")
        # Hadoop takes a URI's path as written: "%20" (Path.as_uri()'s space) must be decoded.
        return self.jvm.org.apache.hadoop.fs.Path(unquote(str(spec)))

    def fs(self, p):
        return p.getFileSystem(self.conf)

    def list_posts(self, specs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
        """Files, folders (recursively) and globs -> sorted ``(uri, kind)``; the errors name
        the spec as ``expand_post_files`` does for the DuckDB engine."""
        if isinstance(specs, (str, os.PathLike)):
            specs = [specs]
        out: list[tuple[str, str]] = []
        for spec in map(str, specs):
            p = self.path(spec)
            fs = self.fs(p)
            if any(ch in spec for ch in GLOB_CHARS):
                matches = fs.globStatus(p) or []
                found = sorted(f for st in matches for f in self._files(fs, st))
                if not found:
                    raise IIPAError(f"{spec}: no posts files match this pattern")
            elif fs.exists(p):
                st = fs.getFileStatus(p)
                if st.isDirectory():
                    found = sorted(self._files(fs, st))
                    if not found:
                        raise IIPAError(f"{spec}: no .parquet, .csv or .jsonl files in this folder")
                elif suffix_kind(p.getName()) is None:
                    raise IIPAError(f"{spec}: unsupported posts file type (use .parquet, .csv or .jsonl)")
                else:
                    found = [(st.getPath().toString(), suffix_kind(p.getName()))]
            else:
                raise IIPAError(f"{spec}: no such posts file")
            out.extend(found)
        if not out:
            raise IIPAError("no posts files given")
        return out

    def _files(self, fs, status) -> list[tuple[str, str]]:
        if not status.isDirectory():
            kind = suffix_kind(status.getPath().getName())
            return [(status.getPath().toString(), kind)] if kind else []
        found, it = [], fs.listFiles(status.getPath(), True)
        root = len(status.getPath().toString())
        while it.hasNext():
            f = it.next().getPath()
            uri, name = f.toString(), f.getName()
            hidden = any(part[:1] in "_." for part in uri[root:].split("/") if part)
            if not hidden and suffix_kind(name):
                found.append((uri, suffix_kind(name)))
        return found

    def first_line(self, uri: str) -> str:
        """The first line of a text file, BOM removed (one JVM call, not one per byte)."""
        p = self.path(uri)
        stream = self.fs(p).open(p)
        try:
            io = self.jvm.java.io
            line = io.BufferedReader(io.InputStreamReader(stream, "UTF-8")).readLine()
        finally:
            stream.close()
        return (line or "").removeprefix("\ufeff")

    def is_empty_or_missing(self, uri: str) -> bool:
        p = self.path(uri)
        fs = self.fs(p)
        return not fs.exists(p) or (fs.getFileStatus(p).isDirectory() and len(fs.listStatus(p)) == 0)

    def write_text(self, uri: str, text: str) -> None:
        local = local_path(uri)
        if local is not None:  # atomically, and no Hadoop checksum file beside it
            write_text(local, text)
            return
        p = self.path(uri)
        out = self.fs(p).create(p, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def mkdirs(self, uri: str) -> None:
        p = self.path(uri)
        self.fs(p).mkdirs(p)

    def write_single(self, df, uri: str, fmt: str, **options) -> None:
        """Write ``df`` as the one file ``uri``: Spark writes a folder of parts next to it,
        whose one part is moved into place (replacing a file there)."""
        target = self.path(uri)
        tmp = self.path(f"{target.getParent().toString()}/.iipa-pairs-{uuid.uuid4().hex}")
        fs = self.fs(target)
        try:
            df.coalesce(1).write.format(fmt).options(**options).mode("overwrite").save(tmp.toString())
            parts = [s.getPath() for s in fs.listStatus(tmp) if s.getPath().getName().startswith("part-")]
            if len(parts) != 1:
                raise IIPAError(f"{uri}: Spark wrote {len(parts)} part files, expected one")
            local = local_path(parts[0].toString())
            if local is not None:  # no Hadoop checksum file beside a local output
                os.replace(local, local_path(target.toString()))
            else:
                if fs.exists(target):
                    fs.delete(target, True)
                if not fs.rename(parts[0], target):
                    raise IIPAError(f"{uri}: cannot move Spark's output into place")
        finally:
            fs.delete(tmp, True)


def csv_columns(header: str, uri: str) -> list[str]:
    """The column names of a CSV header line, checked as ``csvread.csv_header`` checks them."""
    try:
        names = [h.strip() for h in next(csv.reader([header], strict=True), [])]
    except csv.Error as exc:
        raise IIPAError(f"{uri}: cannot read the CSV header (line 1): {exc}") from None
    if not names or names == [""]:
        raise IIPAError(f"{uri}: empty CSV file (no header line)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or "" in names:
        raise IIPAError(f"{uri}: the CSV header (line 1) has {'duplicate' if dup else 'empty'} column names"
                        f"{': ' + ', '.join(dup) if dup else ''}")
    return names


def read_posts(spark, posts):
    """(DataFrame with a ``filename`` column, where it came from for messages)."""
    from pyspark.sql import functions as F

    if isinstance(posts, pd.DataFrame):
        return spark.createDataFrame(posts).withColumn("filename", F.lit("<dataframe>")), "the posts table"
    hfs = HadoopFS(spark)
    files = hfs.list_posts(posts)
    where = ", ".join(display_name(u) for u, _ in files)
    by_kind: dict[str, list[str]] = {}
    for uri, kind in files:
        by_kind.setdefault(kind, []).append(uri)
    frames = []
    try:
        if "parquet" in by_kind:
            # Merging footers is a job of its own: only when there is more than one file.
            merge = "true" if len(by_kind["parquet"]) > 1 else "false"
            frames.append(spark.read.option("mergeSchema", merge).parquet(*by_kind["parquet"]))
        if "json" in by_kind:
            # Every primitive as text, as the DuckDB engine reads JSON: "abc" in likes must be a
            # reject, not a type conflict; a line that is not JSON keeps its text in CORRUPT.
            frames.append(spark.read.option("primitivesAsString", "true").option("mode", "PERMISSIVE")
                          .option("columnNameOfCorruptRecord", CORRUPT).json(by_kind["json"]))
        by_header: dict[tuple[str, ...], list[str]] = {}
        for uri in by_kind.get("csv", []):
            try:
                header = hfs.first_line(uri)
            except UnicodeDecodeError as exc:
                raise IIPAError(f"{display_name(uri)}: cannot read the CSV header (line 1): {exc}") from None
            by_header.setdefault(tuple(csv_columns(header, display_name(uri))), []).append(uri)
        frames += [_read_csv(spark, list(cols), uris) for cols, uris in by_header.items()]
        frames = [df.withColumn("filename", _display_column(F)) for df in frames]
        out = frames[0]
        for df in frames[1:]:
            out = out.unionByName(df, allowMissingColumns=True)
        out.schema  # noqa: B018 - analysis errors (a type conflict between files) surface here
    except IIPAError:
        raise
    except Exception as exc:  # noqa: BLE001 - reader errors are bad input files
        raise IIPAError(f"cannot read posts from {where}: {str(exc).splitlines()[0]}") from None
    return out, where


def _read_csv(spark, columns: list[str], uris: list[str]):
    """CSV files sharing one header, in the DuckDB engine's fixed dialect (csvread.py): RFC 4180,
    quoted line breaks, every field as text. A record Spark cannot parse keeps its text in
    CORRUPT and becomes an "unparsable row" reject (Spark gives no line numbers)."""
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(c, StringType()) for c in [*columns, CORRUPT]])
    return (spark.read.schema(schema).option("header", True).option("enforceSchema", True).option("sep", ",")
            .option("quote", '"').option("escape", '"').option("multiLine", True).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT).option("encoding", "UTF-8").csv(uris))


def _display_column(F):
    """Spark's file URI (percent-encoded) as :func:`display_name` gives it: local files keep
    the names the DuckDB engine reports (a plain path, no ``file:``)."""
    uri = F.col("_metadata.file_path")
    path = F.regexp_replace(F.regexp_replace(uri, "^file:(//)?(?=/)", ""), "\\+", "%2B")  # + is not a space
    return F.when(uri.startswith("file:"), F.url_decode(path)).otherwise(uri)


def display_name(uri: str) -> str:
    """A local file's plain path, any other file's URI."""
    p = local_path(uri)
    return str(p) if p is not None else uri
