"""Turn command-line inputs (files, folders, globs, list files) into a list of image paths.

A folder is searched recursively for image files; a ``.txt``/``.lst`` file lists one
path per line (``#`` comments allowed); a ``.csv`` file lists paths in its ``path``
column (or ``image``, ``file``, else the first column). Relative paths inside a list
file are relative to the list file's folder. A pattern with ``*``, ``?`` or ``[`` is a
glob (``**`` recurses). ``-`` reads paths from standard input, one per line (relative to
the current folder; ``find ... | iipa score -``). Inputs that match nothing are kept, so
they get an error row.

Nothing is skipped silently: a sub-folder that cannot be listed is kept as an input of
its own, so it gets an error row ("unreadable"); the files in a folder that are not images
iipa reads (by extension: a video, a text file, a RAW file) are counted and named in one
warning on stderr (logger ``iipa.inputs``); symlinked folders are followed, and a folder
reached a second time (a symlink loop, or two links to one folder) is not walked again, so
every image is listed once. Hidden entries (``.name``) are skipped by design.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from iipa.errors import IIPAError
from iipa.images import IMAGE_EXTENSIONS, is_image_name

LIST_SUFFIXES = (".txt", ".lst", ".list")
CSV_COLUMNS = ("path", "image", "file", "filename")
NAMED_AT_MOST = 5  # non-image files named in the warning; the rest are counted
log = logging.getLogger(__name__)


def expand_inputs(specs: Iterable[str], *, recursive: bool = True) -> list[str]:
    out: list[str] = []
    for spec in specs:
        if spec == "-":
            out.extend(_read_stdin_list())
            continue
        path = Path(spec)
        if path.is_dir():
            out.extend(walk_images(path, recursive=recursive))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            out.extend(_read_txt_list(path))
        elif path.is_file() and path.suffix.lower() == ".csv":
            out.extend(_read_csv_list(path))
        elif not path.exists() and any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            out.extend(m for m in matches if os.path.isfile(m)) if matches else out.append(spec)
        else:
            out.append(spec)  # a file, or a missing path that will be reported as "not found"
    return out


def walk_images(folder: Path, *, recursive: bool = True) -> list[str]:
    """Image files below ``folder`` (sorted), plus every folder that could not be listed;
    the other files are named in a warning (:func:`not_images`)."""
    out: list[str] = []
    others: list[str] = []
    seen: set[str] = set()
    unreadable: list[str] = []

    def failed(exc: OSError) -> None:
        unreadable.append(os.fspath(exc.filename) if exc.filename else os.fspath(folder))

    for root, dirs, files in os.walk(folder, onerror=failed, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a loop or a second link to a folder already walked
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            path = os.path.join(root, name)
            if not name.startswith(".") and os.path.isfile(path):
                (out if is_image_name(name) else others).append(path)
    if others:
        log.warning(not_images(folder, others))
    return out + sorted(unreadable)


def not_images(folder: Path | str, others: list[str], count: int | None = None) -> str:
    """One line that counts and names the files of ``folder`` that are not scored (``count``:
    how many there are, when ``others`` holds only the first few)."""
    count = len(others) if count is None else count
    names = [_name_in(p, folder) for p in others[:NAMED_AT_MOST]]
    more = f" and {count - NAMED_AT_MOST} more" if count > NAMED_AT_MOST else ""
    return (f"iipa: {folder}: {count} file(s) not scored, their extension is none of "
            f"{' '.join(IMAGE_EXTENSIONS)}: {', '.join(names)}{more}")


def _name_in(path: str, folder: Path | str) -> str:
    """``path`` relative to ``folder``; its base name where it is not inside (a URI's folder
    named otherwise than its files, e.g. with a port)."""
    rel = os.path.relpath(path, folder)
    return os.path.basename(path) if rel.startswith("..") else rel


def _resolve(base: Path, entry: str) -> str:
    p = Path(entry).expanduser()
    return os.fspath(p if p.is_absolute() else base / p)


def _read_txt_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise IIPAError(f"{path}: list file is not UTF-8 text ({exc})") from None
    return _read_lines(lines, path.parent)


def _read_stdin_list() -> list[str]:
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise IIPAError("- reads paths from standard input, but standard input is closed")
    try:
        lines = sys.stdin.read().splitlines()
    except UnicodeDecodeError as exc:
        raise IIPAError(f"standard input: the list of paths is not UTF-8 text ({exc})") from None
    except (OSError, ValueError) as exc:  # a closed or unreadable descriptor
        raise IIPAError(f"- reads paths from standard input, which cannot be read ({exc})") from None
    return _read_lines(lines, Path("."))


def _read_lines(lines: list[str], base: Path) -> list[str]:
    return [_resolve(base, s) for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def _read_csv_list(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []
        lowered = [h.strip().lower() for h in header]
        col = next((lowered.index(c) for c in CSV_COLUMNS if c in lowered), None)
        rows: list[str] = []
        if col is None:  # no known header: treat the first row as data if it names an image
            col = 0
            if header and is_image_name(header[0]):
                rows.append(header[0])
        for n, row in enumerate(reader, start=2):
            if len(row) <= col:
                raise IIPAError(f"{path}: row {n} has no column {col + 1}")
            if row[col].strip():
                rows.append(row[col].strip())
    return [_resolve(path.parent, r) for r in rows]
