"""Writing files safely: one atomic-write helper and one JSON sanitiser for all of iipa.

Every file iipa produces (checkpoints, pairs, reports, CSVs, images) is written to a temp
file beside its destination and renamed over it, so a reader never sees half a file and an
interrupted run leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden ``.<name>.<random>.tmp`` beside ``path`` (unique, so concurrent writers
    of one file never share a temp file; the ``.tmp`` suffix lets cleaners find leftovers)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_on_error: bool = False) -> Iterator[Path]:
    """``with atomic_path(dest) as tmp: <write tmp>``: ``tmp`` replaces ``dest`` when the block ends.

    On an exception the temp file is deleted (``dest`` is untouched), unless ``keep_on_error``:
    then what was written still replaces ``dest`` (for streamed results, where every row
    written is a result worth keeping). The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
    except BaseException:
        if keep_on_error and tmp.exists():
            os.replace(tmp, path)
        else:
            tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, keep_on_error: bool = False, fsync: bool = False) -> Iterator[IO[Any]]:
    """``open()`` for writing, atomically (see :func:`atomic_path`). ``fsync`` flushes the data
    to disk before the rename, for files a crash must not lose (checkpoints, downloads)."""
    binary = "b" in mode
    with atomic_path(path, keep_on_error=keep_on_error) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding, newline=None if binary else newline) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """``obj`` (sanitised by :func:`plain`) as JSON, atomically, with a final newline."""
    return write_text(path, json.dumps(plain(obj), indent=indent, ensure_ascii=False) + "\n")


def plain(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only: dicts (str keys), lists, str, int, float,
    bool, None. NaN and infinities become None (JSON has no NaN); numpy and one-element torch
    scalars become Python numbers; paths become strings; anything else becomes ``str(value)``.
    The same function makes checkpoint metadata safe for ``torch.load(weights_only=True)``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if _is_scalar(value):
        return plain(value.item())
    return str(value)


def _is_scalar(value: Any) -> bool:
    """numpy scalars and one-element arrays/tensors (anything with ``item()`` holding one value)."""
    if not hasattr(value, "item"):
        return False
    size = getattr(value, "size", None)
    if callable(getattr(value, "numel", None)):
        size = value.numel()
    return size == 1
