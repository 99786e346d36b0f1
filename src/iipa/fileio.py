"""Writing files safely: one output policy and one JSON sanitiser for all of iipa.

Every file iipa produces (checkpoints, pairs, reports, CSVs, images) follows one policy:

- a regular file (or a name not taken yet) is written to a hidden temp file beside it and
  renamed over it only when writing succeeded: a reader never sees half a file, and an
  error, a full disk or Ctrl-C leaves the previous file (or none), never a truncated one;
- a symlink is followed: its target is replaced that way, the link itself stays;
- a FIFO or a character device (``/dev/null``, a terminal) is written through, never
  replaced; a path that names one of the process's own descriptors (``/dev/stdout``,
  ``/dev/fd/N``) is written through that descriptor, never opened again;
- a folder (or a name ending in ``/``) and any other special file are refused before any
  work, with the name the user gave.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from iipa.errors import IIPAError


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden ``.<name>.<random>.tmp`` beside ``path`` (unique, so concurrent writers
    of one file never share a temp file; the ``.tmp`` suffix lets cleaners find leftovers)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@dataclass(frozen=True)
class Destination:
    """Where a write to ``shown`` (the user's spelling) really goes."""

    shown: str
    real: Path  # the symlink's target when ``shown`` is a link; ``shown`` itself when written through
    write_through: bool  # a FIFO, character device or descriptor: written in place, never replaced
    mode: int | None  # permission bits of the file replaced (kept), None for a new file


def destination(path: str | os.PathLike) -> Destination:
    """Apply the policy to ``path`` without writing anything; :class:`IIPAError` naming
    ``path`` for a folder, another special file or a place that cannot be written."""
    shown = os.fspath(path)
    if shown.endswith(("/", os.sep)):
        raise IIPAError(f"{shown}: is a folder name (ends in /); give a file name")
    try:
        st = os.stat(shown)  # through links, /dev/stdout and /proc/self/fd/N included
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IIPAError(f"{shown}: is a folder; give a file name")
        # An open descriptor (/dev/stdout, /dev/fd/1) is written through whatever it is: its
        # "target" may be a pipe with no path, or a file the shell has open (`> out.csv`).
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or _is_descriptor(shown):
            if not os.access(shown, os.W_OK):
                raise IIPAError(f"{shown}: permission denied")
            return Destination(shown, Path(shown), True, None)
    real = Path(os.path.realpath(shown))
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise IIPAError(f"{shown}: not a regular file, FIFO or character device; refusing to replace it")
        if not os.access(real, os.W_OK):
            raise IIPAError(f"{shown}: permission denied (the file is read-only)")
    folder = real.parent
    while not folder.exists():  # created when written
        folder = folder.parent
    if not folder.is_dir():
        raise IIPAError(f"{shown}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise IIPAError(f"{shown}: permission denied (cannot write in {folder})")
    return Destination(shown, real, False, None if st is None else stat.S_IMODE(st.st_mode))


def inherited_descriptor(path: str | os.PathLike) -> int | None:
    """The number of this process's open descriptor that ``path`` names: ``/dev/stdout`` (1),
    ``/dev/stderr`` (2), ``/dev/fd/N``, ``/proc/self/fd/N``, ``/proc/<our pid>/fd/N``, or a link
    to one of them; None for anything else. Such a path is written through the descriptor
    itself: opening it again would start a new file offset, and the shell's next write to a
    file it redirected into would land over what iipa wrote."""
    p = os.path.abspath(os.fspath(path))
    for _ in range(40):  # the kernel's limit on links followed
        head, _, name = p.rpartition("/")
        if p in ("/dev/stdout", "/dev/stderr"):
            return 1 if p == "/dev/stdout" else 2
        if name.isdigit() and head in ("/dev/fd", "/proc/self/fd", f"/proc/{os.getpid()}/fd"):
            return int(name)
        if not os.path.islink(p):
            return None
        p = os.path.normpath(os.path.join(head, os.readlink(p)))
    return None


def _is_descriptor(path: str) -> bool:
    """``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` or ``/proc/<pid>/fd/N``."""
    p = os.path.abspath(path)
    head, _, name = p.rpartition("/")
    return (p in ("/dev/stdout", "/dev/stderr") or (head == "/dev/fd" and name.isdigit())
            or (head.startswith("/proc/") and head.endswith("/fd") and name.isdigit()))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(dest) as p: <write p>``, following the policy above.

    For a regular file ``p`` is a temp file that replaces ``dest`` (its target, for a
    symlink) when the block ends without an exception; on any exception, KeyboardInterrupt
    included, it is deleted and ``dest`` is untouched. For a FIFO or a character device
    ``p`` is the device itself. Missing parent folders are created.
    """
    dest = destination(path)
    if dest.write_through:
        yield dest.real
        return
    dest.real.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest.real)
    try:
        yield tmp
        if dest.mode is not None:
            os.chmod(tmp, dest.mode)
        os.replace(tmp, dest.real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, fsync: bool = False) -> Iterator[IO[Any]]:
    """``open()`` for writing, atomically (see :func:`atomic_path`). ``fsync`` flushes the data
    to disk before the rename, for files a crash must not lose (checkpoints, downloads)."""
    binary = "b" in mode
    dest = destination(path)
    fd = inherited_descriptor(path) if dest.write_through else None
    if fd is not None:
        with _through_descriptor(fd, mode, None if binary else encoding, None if binary else newline) as fh:
            yield fh
        return
    if dest.write_through:  # append: never truncate what a FIFO or device points at
        mode = mode.replace("w", "a")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding, newline=None if binary else newline) as fh:
            yield fh
            fh.flush()
            if fsync and stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                os.fsync(fh.fileno())


@contextmanager
def _through_descriptor(fd: int, mode: str, encoding: str | None, newline: str | None) -> Iterator[IO[Any]]:
    """A file object on the inherited descriptor ``fd`` (left open), after what Python has
    buffered for stdout and stderr, so that lines keep their order."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    with open(fd, mode, encoding=encoding, newline=newline, closefd=False) as fh:
        yield fh
        fh.flush()


def printable(value: Any) -> Any:
    """``value`` with the bytes of a file name that is not valid UTF-8 written as ``\\xNN``.

    Python lists such names with lone surrogates (PEP 383); they cannot be written as UTF-8.
    Every output (CSV, JSON, tables, HTML, messages) writes them this one way, so
    ``caf\\xe9.jpg`` reads the same everywhere and the bytes can be recovered (only a name
    that already holds a literal ``\\xNN`` is ambiguous). Other values are returned unchanged.
    """
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte
        return value.encode("utf-8", "backslashreplace").decode("ascii")
    return raw.decode("utf-8", "backslashreplace")


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
