"""Write result rows as an aligned table, CSV, JSON or JSONL, streaming where the format allows.

Every table a command writes goes through :func:`open_output`, which follows the one
output policy of :mod:`iipa.fileio`: None, ``-`` and ``/dev/stdout`` are stdout (the
inherited descriptor, the default format ``table``); a regular file is replaced only
when the whole table was written (an error, a full disk or Ctrl-C keeps the previous file
and leaves no partial one); a symlink's target is written; a FIFO or a character device
(``/dev/stdout``, ``/dev/null``) is written through; a folder is refused. Commands call
:func:`check_output` first, so a path that cannot be written fails before any work.
File names that are not valid UTF-8 are written as ``\\xNN`` (:func:`iipa.fileio.printable`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from iipa.csvsafe import SafeDictWriter
from iipa.errors import IIPAError
from iipa.fileio import atomic_open, destination, inherited_descriptor, plain, printable

FORMATS = ("table", "csv", "json", "jsonl")
SCORE_COLUMNS = ("path", "score", "scaled", "level", "error")  # iipa score's rows, local or on Spark
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "table"}


def is_stdout(output: str | os.PathLike | None) -> bool:
    """No output, ``-``, ``/dev/stdout`` or another name of descriptor 1: all mean standard output."""
    return output is None or output == "-" or inherited_descriptor(output) == 1


def infer_format(output: str | None, explicit: str | None) -> str:
    """``--format``, else the one ``--output``'s extension names; ``table`` on standard output."""
    if explicit:
        return explicit
    if output and not is_stdout(output):
        suffix = Path(output).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise IIPAError(f"cannot tell the format of --output {output}; use --format {{{','.join(FORMATS)}}}")
        return _EXTENSIONS[suffix]
    return "table"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str, fh: IO[str]) -> int:
    """Write ``rows`` to ``fh``; returns the number written. Table output buffers to align."""
    n = 0
    rows = ({k: printable(v) for k, v in row.items()} for row in rows)  # non-UTF-8 names: \xNN in every format
    if fmt == "csv":
        writer = SafeDictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
            n += 1
    elif fmt == "jsonl":
        for row in rows:
            fh.write(json.dumps(plain(row), ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "json":
        fh.write("[")
        for row in rows:
            fh.write(("," if n else "") + "\n  " + json.dumps(plain(row), ensure_ascii=False))
            n += 1
        fh.write("\n]\n" if n else "]\n")
    elif fmt == "table":
        table = [[_cell(r.get(c)) for c in columns] for r in rows]
        n = len(table)
        widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
        fh.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip() + "\n")
        for r in table:
            fh.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() + "\n")
    else:
        raise IIPAError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    fh.flush()
    return n


def check_output(path: str | os.PathLike | None, flag: str = "--output") -> None:
    """Fail now (:class:`IIPAError`, exit 2) if ``path`` cannot take a table: a folder, a
    name ending in ``/``, a special file other than a FIFO or character device, or a place
    that cannot be written. Nothing is created."""
    if is_stdout(path):
        return
    try:
        destination(path)
    except IIPAError as exc:
        raise IIPAError(f"{flag} {exc}") from None


@contextmanager
def open_output(path: str | os.PathLike | None, flag: str = "--output") -> Iterator[IO[str]]:
    """``with open_output(path) as fh``: ``sys.stdout`` for None, ``-`` and ``/dev/stdout``
    (one behaviour however standard output is named), else the output policy above."""
    if is_stdout(path):
        if sys.stdout is None:
            raise IIPAError("standard output is closed; give -o FILE")
        yield sys.stdout
        return
    check_output(path, flag)
    dest = destination(path)
    try:
        with atomic_open(path, "w", newline="", fsync=True) as fh:
            yield fh
    except OSError as exc:
        # Only errors of the output itself (a write, the final flush, the rename): an
        # OSError from the caller's own work passes through unchanged.
        ours = exc.filename is None or Path(os.fspath(exc.filename)).parent == dest.real.parent
        if isinstance(exc, BrokenPipeError) or not ours:
            raise
        kept = "" if dest.write_through else "; nothing was written, the previous file is kept"
        raise IIPAError(f"{flag} {dest.shown}: {exc.strerror or exc}{kept}") from None


def ensure_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder ``path``; a clear :class:`IIPAError` (exit 2) when it names
    a file, or a file stands where one of its parents should be."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise IIPAError(f"{flag} {p}: is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise IIPAError(f"{flag} {p}: a parent of this folder is a file") from None
    except PermissionError:
        raise IIPAError(f"{flag} {p}: permission denied") from None
    return p
