"""Write result rows as an aligned table, CSV, JSON or JSONL, streaming where the format allows."""

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
from iipa.fileio import atomic_open, plain

FORMATS = ("table", "csv", "json", "jsonl")
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "table"}


def infer_format(output: str | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if output:
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


@contextmanager
def open_output(path: str | None) -> Iterator[IO[str]]:
    """``with open_output(path) as fh``: a file written atomically, or stdout for None/'-'."""
    if path in (None, "-"):
        yield sys.stdout
        return
    # On an error too: rows already written are results, and nothing is lost.
    with atomic_open(path, "w", newline="", keep_on_error=True) as fh:
        yield fh


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
