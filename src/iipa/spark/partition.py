"""The executor side of Spark scoring: one partition of paths in, one row per path out.

Runs inside Spark's Python workers, which import no torch: the model arrives as the bytes of
its ONNX export (a broadcast variable), is written once per machine to a file named by its
content, and each partition builds one onnxruntime scorer on it, which decodes with the
model's own profile (:meth:`Profile.view_array`), so the scores are ``iipa score``'s.

Paths are read here, not listed on the driver: a local path (or ``file:`` URI) is opened by
the scorer itself, any other URI (``hdfs://``, ``s3a://``, ``gs://`` ...) is read with fsspec
when installed, else pyarrow.fs. A file that cannot be read is an error row, like one that
cannot be decoded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from iipa.images import DEFAULT_MAX_PIXELS
from iipa.output import SCORE_COLUMNS as COLUMNS

SCHEMA = "path string, score double, scaled double, level string, error string"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Images handed to the scorer at a time: a few of its batches, so that remote files read into
# memory stay bounded and results flow out while the partition runs.
SLICE = 128


@dataclass(frozen=True)
class PartitionOptions:
    """What every partition needs besides the model (small: pickled with each task)."""

    crops: int | None = None  # None: the model's default views
    batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None  # None: the task's spark.task.cpus


def local_path(path: str) -> str | None:
    """The local file a path names, or None for a remote URI. ``file:/a/b`` and
    ``file:///a/b`` name ``/a/b``, taken literally (Spark's listings do not percent-encode)."""
    if path.startswith("file:"):
        return re.sub(r"^file:(//(?=/))?", "", path)
    if _URI.match(path) and not re.match(r"^[A-Za-z]:[\\/]", path):  # a scheme, not a drive letter
        return None
    return path


def model_file(data: bytes) -> str:
    """The ONNX bytes as a file in the temp folder, named by their hash: written once per
    machine (atomically, so concurrent workers never read half a file), reused after."""
    digest = hashlib.sha256(data).hexdigest()[:20]
    path = os.path.join(tempfile.gettempdir(), f"iipa-spark-{digest}.onnx")
    if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
        fd, tmp = tempfile.mkstemp(prefix=f".iipa-spark-{digest}-", suffix=".tmp", dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def make_partition_scorer(model_path: str, options: PartitionOptions, threads: int) -> Any:
    """The one scorer of a partition: the broadcast ``.onnx`` on onnxruntime (no torch);
    ``threads`` decode and run the network."""
    from iipa.scoring import make_scorer

    return make_scorer(model_path, runtime="onnx", device="cpu", crops=options.crops, batch_size=options.batch_size,
                       max_pixels=options.max_pixels, num_workers=threads, threads=threads)


def task_threads(options: PartitionOptions) -> int:
    if options.threads is not None:
        return options.threads
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, context.cpus()) if context is not None else 1


def read_remote(uri: str) -> bytes:
    """A remote file's bytes (fsspec if installed, else pyarrow.fs: ``s3a://`` read as ``s3://``)."""
    try:
        import fsspec
    except ImportError:
        fsspec = None
    if fsspec is not None:
        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(re.sub(r"^s3a://", "s3://", uri))
    with filesystem.open_input_stream(path) as fh:
        return fh.read()


def _fetch(path: str) -> tuple[Any, str | None]:
    """(what the scorer reads, None) or (None, the error row's text)."""
    local = local_path(path)
    if local is not None:
        return local, None
    try:
        return read_remote(path), None
    except FileNotFoundError:
        return None, "not found"
    except Exception as exc:  # noqa: BLE001 - any filesystem's failure is this row's error
        return None, f"unreadable: {exc.__class__.__name__}: {exc}"


def score_slice(scorer: Any, paths: list[str], pool: ThreadPoolExecutor | None = None) -> pd.DataFrame:
    """Rows (path, score, scaled, level, error) for ``paths``, in order."""
    fetched = list(pool.map(_fetch, paths)) if pool is not None else [_fetch(p) for p in paths]
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
    partition builds none). ``model`` is the broadcast of the ONNX bytes."""
    scorer, pool = None, None
    try:
        for batch in batches:
            paths = batch[column].tolist()
            for start in range(0, len(paths), SLICE):
                chunk = paths[start:start + SLICE]
                if scorer is None:
                    threads = task_threads(options)
                    scorer = make_partition_scorer(model_file(model.value), options, threads)
                if pool is None and any(local_path(p) is None for p in chunk):
                    # Remote reads wait on the network, not the CPU: more readers than cores.
                    pool = ThreadPoolExecutor(max(4, 2 * threads), thread_name_prefix="iipa-read")
                yield score_slice(scorer, chunk, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
