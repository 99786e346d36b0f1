"""The executor side of Spark scoring: one partition of paths in, one row per path out.

Runs inside Spark's Python workers, which import no torch: the model arrives as the bytes of
its ONNX export (a broadcast variable), is written once per machine to a file named by its
content, and each partition builds one onnxruntime scorer on it, which decodes with the
model's own profile (:meth:`Profile.view_array`), so the scores are ``iipa score``'s.

Paths are read here, not listed on the driver: a local path (or ``file:`` URI) is opened by
the scorer itself, a URI of a file system in :data:`FILESYSTEM_SCHEMES` (``hdfs://``,
``s3a://``, ``gs://``, ``abfss://`` ...) is read with fsspec when installed, else pyarrow.fs,
at most the input policy's bytes (:mod:`iipa.inputpolicy`, the same limits as ``iipa
score``). Any other scheme (``data:``, ``http://``, ``ftp://`` ...) is an error row, never
opened: a paths table must not make executors fetch from the network or read inline data. A
file that cannot be read is an error row, like one that cannot be decoded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from iipa.fileio import write_bytes
from iipa.inputpolicy import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, InputPolicy
from iipa.output import SCORE_COLUMNS as COLUMNS

SCHEMA = "path string, score double, scaled double, level string, error string"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# File systems a paths table may name (besides plain local paths): Hadoop's and the clouds'.
FILESYSTEM_SCHEMES = ("file", "hdfs", "s3", "s3a", "gs", "abfs", "abfss")
# Images handed to the scorer at a time: a few of its batches, so that remote files read into
# memory stay bounded and results flow out while the partition runs.
SLICE = 128


@dataclass(frozen=True)
class PartitionOptions:
    """What every partition needs besides the model (small: pickled with each task)."""

    crops: int | None = None  # None: the model's default views
    batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    threads: int | None = None  # None: the task's spark.task.cpus
    # URI schemes read (lower case); a library caller may add one its executors can read
    # through fsspec (the tests add fsspec's in-memory file system).
    schemes: tuple[str, ...] = FILESYSTEM_SCHEMES


def scheme(path: str) -> str | None:
    """A URI's scheme in lower case; None for a plain path (a drive letter is no scheme)."""
    m = _URI.match(path)
    return m.group(1).lower() if m and not re.match(r"^[A-Za-z]:[\\/]", path) else None


def local_path(path: str) -> str | None:
    """The local file a path names, or None for a remote URI. ``file:/a/b`` and
    ``file:///a/b`` name ``/a/b``, taken literally (Spark's listings do not percent-encode)."""
    if path.startswith("file:"):
        return re.sub(r"^file:(//(?=/))?", "", path)
    if scheme(path) is not None:
        return None
    return path


def model_file(data: bytes) -> str:
    """The ONNX bytes as a file in the temp folder, named by their hash: written once per
    machine (atomically, so concurrent workers never read half a file), reused after."""
    digest = hashlib.sha256(data).hexdigest()[:20]
    path = os.path.join(tempfile.gettempdir(), f"iipa-spark-{digest}.onnx")
    if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
        write_bytes(path, data)
    return path


def make_partition_scorer(model_path: str, options: PartitionOptions, threads: int) -> Any:
    """The one scorer of a partition: the broadcast ``.onnx`` on onnxruntime (no torch);
    ``threads`` decode and run the network."""
    from iipa.scoring import make_scorer

    return make_scorer(model_path, runtime="onnx", device="cpu", crops=options.crops, batch_size=options.batch_size,
                       max_pixels=options.max_pixels, max_bytes=options.max_bytes, num_workers=threads,
                       threads=threads)


def task_threads(options: PartitionOptions) -> int:
    if options.threads is not None:
        return options.threads
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, context.cpus()) if context is not None else 1


class TooLarge(OSError):
    """A remote file holds more bytes than allowed."""


def read_remote(uri: str, max_bytes: int | None = None) -> bytes:
    """A remote file's bytes (fsspec if installed, else pyarrow.fs: ``s3a://`` read as
    ``s3://``); past ``max_bytes`` :class:`TooLarge`, from the size the file system reports
    when it does, else after reading one byte more than allowed, never the whole file."""
    want = -1 if max_bytes is None else max_bytes + 1
    try:
        import fsspec
    except ImportError:
        fsspec = None
    if fsspec is not None:
        with fsspec.open(uri, "rb") as fh:
            _check_size(getattr(fh, "size", None), max_bytes)
            return _check_size(fh.read(want), max_bytes)
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(re.sub(r"^s3a://", "s3://", uri))
    if max_bytes is not None:
        _check_size(filesystem.get_file_info(path).size, max_bytes)
    with filesystem.open_input_stream(path) as fh:
        return _check_size(fh.read(want) if want >= 0 else fh.read(), max_bytes)


def _check_size(data: Any, max_bytes: int | None) -> Any:
    """``data`` (bytes, or a size in bytes) unless it is over ``max_bytes``."""
    size = len(data) if isinstance(data, (bytes, bytearray)) else data
    if max_bytes is not None and isinstance(size, int) and size > max_bytes:
        raise TooLarge(InputPolicy(max_bytes=max_bytes).bytes_problem(size))
    return data


def fetch(path: str, options: PartitionOptions) -> tuple[Any, str | None]:
    """(what the scorer reads, None) or (None, the error row's text)."""
    local = local_path(path)
    if local is not None:
        return local, None
    if scheme(path) not in options.schemes:
        return None, (f"unsupported scheme {scheme(path)!r}: iipa reads plain paths and "
                      f"{', '.join(options.schemes)} URIs")
    try:
        return read_remote(path, options.max_bytes), None
    except FileNotFoundError:
        return None, "not found"
    except TooLarge as exc:
        return None, f"too large: {exc}"  # as the scorer words it for a local file
    except Exception as exc:  # noqa: BLE001 - any filesystem's failure is this row's error
        return None, f"unreadable: {exc.__class__.__name__}: {exc}"


def score_slice(scorer: Any, paths: list[str], pool: ThreadPoolExecutor | None = None,
                options: PartitionOptions | None = None, sources: list[str] | None = None) -> pd.DataFrame:
    """Rows (path, score, scaled, level, error) for ``paths``, in order; each image is read
    from its ``sources`` entry when given (an absolute path behind a relative one)."""
    read = partial(fetch, options=options or PartitionOptions())
    where = paths if sources is None else sources
    fetched = list(pool.map(read, where)) if pool is not None else [read(p) for p in where]
    readable = [item for item, _ in fetched if item is not None]
    results = iter(list(scorer.iter_scores(readable)) if readable else [])
    rows = []
    for path, (item, error) in zip(paths, fetched, strict=True):
        if item is None:
            rows.append((path, None, None, None, error))
        else:
            r = next(results)
            rows.append((path, r.score, r.scaled, r.level, r.error))
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"score": "float64", "scaled": "float64"})


def score_partition(batches: Iterator[pd.DataFrame], model: Any, options: PartitionOptions,
                    column: str = "path") -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: one scorer per partition, built on the first row (an empty
    partition builds none). ``model`` is the broadcast of the ONNX bytes. A ``source``
    column, when the batches have one, says where each ``column`` path is read from."""
    scorer, pool = None, None
    try:
        for batch in batches:
            paths = batch[column].tolist()
            sources = batch["source"].tolist() if "source" in batch.columns else paths
            for start in range(0, len(paths), SLICE):
                chunk = sources[start:start + SLICE]
                if scorer is None:
                    threads = task_threads(options)
                    scorer = make_partition_scorer(model_file(model.value), options, threads)
                if pool is None and any(local_path(p) is None for p in chunk):
                    # Remote reads wait on the network, not the CPU: more readers than cores.
                    pool = ThreadPoolExecutor(max(4, 2 * threads), thread_name_prefix="iipa-read")
                yield score_slice(scorer, paths[start:start + SLICE], pool, options, sources=chunk)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
