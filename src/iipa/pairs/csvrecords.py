"""Record by record reading of a posts CSV in iipa's dialect, with line numbers, for what
DuckDB's reader cannot recover (see :mod:`iipa.pairs.csvread`).

The recovery rule: a record that cannot be parsed (bad quoting, or a record that runs over
several lines with the wrong number of fields: its quotes did not fall on field edges) is
rejected with the line it starts on, and reading resumes at the next line of the file
itself, so every line an unterminated quote swallowed is parsed again: each becomes a row
or its own reject, with its number. A record that parses but spans more than
``LONG_RECORD_LINES`` lines is kept and reported: RFC 4180 allows line breaks in a quoted
field, so two stray quotes many lines apart make one valid record that holds the lines
between them in a caption.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

# Records spanning more lines than this are reported (kept, not rejected). Captions of the
# dev crawl (8,368 real Instagram posts) hold at most 4 line breaks (5 lines); a stray-quote
# pair further apart than 10 lines is reported, a closer one is not distinguishable from a
# caption with line breaks.
LONG_RECORD_LINES = 10
MAX_REJECT_TEXT = 65536  # characters of a rejected record kept in rejects.csv
BATCH_ROWS = 100_000  # rows handed to the caller at a time (a broken 10 M-row file stays bounded)
READ_CHUNK = 1 << 22  # bytes per read when scanning a file

Reject = tuple[str, int, str]  # reason, line, text


def _physical_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the LF) of an LF-only file; ``None`` for a line longer
    than ``max_line_bytes`` (the rest of it is skipped)."""
    with open(path, "rb") as fh:
        number = 0
        while raw := fh.readline(max_line_bytes + 1):
            number += 1
            if raw.endswith(b"\n"):
                yield number, raw[:-1]
            elif len(raw) > max_line_bytes:
                while (more := fh.readline(READ_CHUNK)) and not more.endswith(b"\n"):
                    pass
                yield number, None
            else:
                yield number, raw  # the last line, with no LF


class _LineTooLong(Exception):
    pass


def parse_records(path: Path, n_fields: int, *, max_line_bytes: int, first_line: int = 2,
                  on_rows: Callable[[list[list[str | None]]], None],
                  on_long: Callable[[int, int], None]) -> list[Reject]:
    """Parse the LF-only file ``path`` after its header, record by record (see the module):
    rows go to ``on_rows`` in batches (fields as text, empty → None), records spanning more
    than ``LONG_RECORD_LINES`` lines to ``on_long(first line, lines)``; returns the rejects.

    One ``csv.reader`` runs over the lines while records parse (it reads no further than
    the record it returns, so the lines each record used are known); after a parse error
    a new one starts at the line after the bad record's first line."""
    lines = _physical_lines(path, max_line_bytes)
    for number, _ in lines:  # the header
        if number >= first_line - 1:
            break
    pending: deque[tuple[int, bytes | None]] = deque()  # lines to read again, before the file's next ones
    used: list[tuple[int, bytes | None]] = []  # the lines of the record being parsed
    undecodable: list[int] = []  # those of its lines that are not UTF-8
    rejects: list[Reject] = []
    rows: list[list[str | None]] = []

    def feed() -> Iterator[str]:
        while True:
            item = pending.popleft() if pending else next(lines, None)
            if item is None:
                return
            used.append(item)
            if item[1] is None:
                raise _LineTooLong
            try:
                yield item[1].decode("utf-8") + "\n"
            except UnicodeDecodeError:
                undecodable.append(item[0])
                yield item[1].decode("utf-8", "replace") + "\n"

    def reject(reason: str, whole: bool) -> None:
        if whole:  # the quotes held: the record is one reject
            text = b"\n".join(raw for _, raw in used if raw is not None)
        else:  # resume at the next line: parse again what this record ran over
            text = used[0][1] or b""
            pending.extendleft(reversed(used[1:]))
        rejects.append((reason, used[0][0], text.decode("utf-8", "replace")[:MAX_REJECT_TEXT]))

    reader = csv.reader(feed(), strict=True)
    while True:
        used.clear()
        undecodable.clear()
        try:
            record = next(reader)
        except StopIteration:
            break
        except (csv.Error, _LineTooLong):
            # A line too long inside a quoted field goes back with the rest: rejected on its own.
            reject("line too long" if used[0][1] is None else "bad quoting", whole=False)
            reader = csv.reader(feed(), strict=True)
            continue
        if not record:
            continue  # a blank line
        if len(record) != n_fields:
            reject("wrong number of fields", whole=len(used) == 1)
        elif undecodable:
            reject("bad encoding", whole=True)
        else:
            if len(used) > LONG_RECORD_LINES:
                on_long(used[0][0], len(used))
            rows.append([v if v != "" else None for v in record])
            if len(rows) >= BATCH_ROWS:
                on_rows(rows)
                rows = []
    if rows:
        on_rows(rows)
    return rejects


def long_records(path: Path, *, limit: int = LONG_RECORD_LINES) -> list[tuple[int, int]]:
    """(first line, lines) of every record of ``path`` (LF-only, consistently quoted) that
    spans more than ``limit`` lines: a record ends at a LF outside quotes (an even number of
    quotes before it, since a quote inside a quoted field is doubled). One vectorised pass."""
    out: list[tuple[int, int]] = []
    quotes = 0  # quotes seen so far (parity is what counts)
    lines_before = 0  # LFs before the current chunk
    record_start = 1  # the line the current record starts on
    last = b"\n"
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
            data = np.frombuffer(chunk, dtype=np.uint8)
            lf = np.flatnonzero(data == 10)
            qpos = np.flatnonzero(data == 34)
            before = quotes + np.searchsorted(qpos, lf)
            ends = lf[(before % 2) == 0]
            end_lines = lines_before + np.searchsorted(lf, ends) + 1  # the line each record ends on
            starts = np.concatenate(([record_start], end_lines[:-1] + 1)) if len(end_lines) else np.array([])
            spans = end_lines - starts + 1 if len(end_lines) else np.array([])
            for i in np.flatnonzero(spans > limit):
                out.append((int(starts[i]), int(spans[i])))
            if len(end_lines):
                record_start = int(end_lines[-1]) + 1
            quotes += len(qpos)
            lines_before += len(lf)
            last = chunk
        if not last.endswith(b"\n"):
            lines_before += 1  # the last line has no LF
    span = lines_before - record_start + 1
    if span > limit:
        out.append((record_start, span))
    return out
