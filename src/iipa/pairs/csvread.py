"""How iipa reads a posts CSV file: one fixed dialect, and bad records rejected one by one.

The dialect is fixed, never sniffed (a sniffer guesses from a sample, and one odd line can
make it guess wrong for the whole file): RFC 4180 — comma delimiter, double-quote quoting,
a quote inside a quoted field doubled (``""``), quoted fields may hold commas and line
breaks (real captions do); the first record is the header; UTF-8 (a BOM is ignored). Line
ends may be LF, CRLF or CR, mixed within one file, a CR-only file too (a file holding CR is
read through a normalised copy, CRLF and CR → LF, so line numbers are unchanged). A line
may be up to ``MAX_LINE_BYTES`` long.

A record that cannot be parsed becomes a reject with the line it starts on (header = 1)
and a reason; reading resumes at the next line. DuckDB's reader (``store_rejects``) does
the parsing. When a quote went wrong (an unterminated quote, or a record over several
lines with the wrong number of fields), DuckDB's own recovery skips to the next quote and
reports only the first line (its copy of the record is cut at 10,000 characters), so the
file is then read again record by record from the file itself
(:func:`iipa.pairs.csvrecords.parse_records`): only the broken line is lost, and every
line it swallowed becomes a row or its own reject. A record that parses but spans more
than ``LONG_RECORD_LINES`` lines (two stray quotes pair up into one valid quoted field)
is kept and listed in the table ``csv_long_records`` (source_file, line, lines), which
the build reports as a warning.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from iipa.errors import IIPAError
from iipa.pairs.csvrecords import LONG_RECORD_LINES, MAX_REJECT_TEXT, READ_CHUNK, long_records, parse_records

MAX_LINE_BYTES = 32 * 1024 * 1024
# DuckDB's error types → our reasons; the first one a record has, in this order, is its reason.
REASON_OF = {"INVALID ENCODING": "bad encoding", "UNQUOTED VALUE": "bad quoting",
             "LINE SIZE OVER MAXIMUM": "line too long", "TOO MANY COLUMNS": "wrong number of fields",
             "MISSING COLUMNS": "wrong number of fields"}
LINE_REASONS = ("bad encoding", "bad quoting", "line too long", "wrong number of fields", "unparsable row")


def sql_str(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def csv_header(path: Path, *, shown_as: str | os.PathLike | None = None) -> list[str]:
    """The column names of the header record (LF, CRLF or CR line ends); IIPAError, naming
    ``shown_as`` (default ``path``), for an empty or unreadable header."""
    def lines(fh) -> Iterator[str]:  # decoded line by line: a bad byte further down is a reject, not this
        first = True
        while raw := fh.readline(MAX_LINE_BYTES):
            for part in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").splitlines(keepends=True):
                yield part.decode("utf-8-sig" if first else "utf-8")
                first = False

    shown = shown_as or path
    try:
        with open(path, "rb") as fh:
            header = next(csv.reader(lines(fh), strict=True), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IIPAError(f"{shown}: cannot read the CSV header (line 1): {exc}") from None
    if not header:
        raise IIPAError(f"{shown}: empty CSV file (no header line)")
    names = [h.strip() for h in header]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or "" in names:
        raise IIPAError(f"{shown}: the CSV header (line 1) has {'duplicate' if dup else 'empty'} column names"
                        f"{': ' + ', '.join(dup) if dup else ''}")
    return names


def read_csv_sql(path: str | os.PathLike, columns: list[str], *, source: str | os.PathLike | None = None,
                 rejects: str | None = None) -> str:
    """``read_csv`` of ``path`` in the fixed dialect, every column as text, plus ``filename``
    (``source``: the name to report, when ``path`` is a normalised copy); bad records go to
    the tables ``<rejects>_errors``/``<rejects>_scans`` (DuckDB's defaults when None)."""
    names = f", rejects_table='{rejects}_errors', rejects_scan='{rejects}_scans'" if rejects else ""
    spec = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in columns) + "}"
    return (f"SELECT *, {sql_str(source or path)} AS filename FROM read_csv({sql_str(path)}, auto_detect=false, "
            f"header=true, columns={spec}, delim=',', quote='\"', escape='\"', new_line='\\n', "
            f"strict_mode=true, max_line_size={MAX_LINE_BYTES}, store_rejects=true{names})")


@contextmanager
def lf_copy(path: Path) -> Iterator[tuple[Path, int]]:
    """(``path`` itself when it holds no CR, else a temporary copy with CRLF and CR made LF
    (DuckDB's strict parser refuses a file whose line ends are mixed), its number of lines)."""
    lines, last, has_cr = 0, b"\n", False
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
            has_cr = has_cr or b"\r" in chunk
            lines += chunk.count(b"\n")
            last = chunk
    if not has_cr:
        yield path, lines + (not last.endswith(b"\n"))
        return
    with tempfile.TemporaryDirectory(prefix="iipa-csv-") as tmp:
        out = Path(tmp) / "posts.csv"
        lines, last = 0, b"\n"
        with open(path, "rb") as src, open(out, "wb") as dst:
            carry = b""
            for chunk in iter(lambda: src.read(READ_CHUNK), b""):
                chunk, carry = carry + chunk, b""
                if chunk.endswith(b"\r"):  # its LF may start the next chunk
                    chunk, carry = chunk[:-1], b"\r"
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                lines += chunk.count(b"\n")
                dst.write(chunk)
                last = chunk or last
            if carry:
                dst.write(b"\n")
                lines, last = lines + 1, b"\n"
        yield out, lines + (not last.endswith(b"\n"))


def load_csv(con, path: Path, table: str) -> None:
    """Read the CSV ``path`` into the new table ``table`` (text columns + ``filename``); its
    bad records go to the table ``csv_bad_lines`` (reason, source_file, line, csv_line), and
    records spanning more than ``LONG_RECORD_LINES`` lines to ``csv_long_records``."""
    con.execute("CREATE TEMP TABLE IF NOT EXISTS csv_bad_lines "
                "(reason VARCHAR, source_file VARCHAR, line BIGINT, csv_line VARCHAR)")
    con.execute("CREATE TEMP TABLE IF NOT EXISTS csv_long_records (source_file VARCHAR, line BIGINT, lines BIGINT)")
    for name in (table, f"{table}_rej_errors", f"{table}_rej_scans"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    long: list[tuple[int, int]] = []
    with lf_copy(path) as (readable, n_lines):
        columns = csv_header(readable, shown_as=path)
        con.execute(f"CREATE TEMP TABLE {table} AS "
                    f"{read_csv_sql(readable, columns, source=path, rejects=table + '_rej')}")
        errors = [] if not _has(con, f"{table}_rej_errors") else con.execute(
            f"SELECT line_byte_position, list(error_type), any_value(csv_line) FROM {table}_rej_errors "
            "GROUP BY line_byte_position ORDER BY 1").fetchall()
        if any("UNQUOTED VALUE" in types or "\n" in (text or "") for _, types, text in errors):
            bad = _read_records(con, readable, columns, table, str(path), long)
        else:
            starts = _line_numbers(readable, [pos for pos, _, _ in errors])
            bad = [(next((REASON_OF[t] for t in REASON_OF if t in types), "unparsable row"), first,
                    (text or "")[:MAX_REJECT_TEXT]) for (_, types, text), first in zip(errors, starts, strict=True)]
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if rows + len(errors) < n_lines - 1:  # a record spans lines (or a line is blank)
                long = long_records(readable)
    if bad:
        con.executemany("INSERT INTO csv_bad_lines VALUES (?, ?, ?, ?)",
                        [(reason, str(path), line, text) for reason, line, text in bad])
    if long:
        con.executemany("INSERT INTO csv_long_records VALUES (?, ?, ?)", [(str(path), a, n) for a, n in long])


def _read_records(con, readable: Path, columns: list[str], table: str, source: str,
                  long: list[tuple[int, int]]) -> list[tuple[str, int, str]]:
    """Replace ``table`` by the rows of :func:`parse_records`; returns its rejects."""
    con.execute(f"DROP TABLE {table}")
    spec = ", ".join(f'"{c.replace(chr(34), chr(34) * 2)}" VARCHAR' for c in [*columns, "filename"])
    con.execute(f"CREATE TEMP TABLE {table} ({spec})")

    def insert(rows: list[list[str | None]]) -> None:
        batch = pd.DataFrame(rows, columns=columns, dtype=object)
        batch["filename"] = source
        con.register("_csv_batch", batch)
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM _csv_batch")
        finally:
            con.unregister("_csv_batch")

    return parse_records(readable, len(columns), max_line_bytes=MAX_LINE_BYTES, on_rows=insert,
                         on_long=lambda line, n: long.append((line, n)))


def long_csv_records(con) -> list[dict]:
    """The records :func:`load_csv` kept although they span more than ``LONG_RECORD_LINES``
    lines, in file order: {source_file, line (where it starts), lines}."""
    if not _has(con, "csv_long_records"):
        return []
    rows = con.execute("SELECT source_file, line, lines FROM csv_long_records ORDER BY 1, 2").fetchall()
    return [{"source_file": f, "line": int(a), "lines": int(n)} for f, a, n in rows]


def long_records_warning(records: list[dict], shown: int = 5) -> str | None:
    """One warning line for the build summary naming the long records (the first ``shown``)."""
    if not records:
        return None
    where = "; ".join(f"{r['source_file']} lines {r['line']}-{r['line'] + r['lines'] - 1}" for r in records[:shown])
    more = f" and {len(records) - shown} more (stats.json lists all)" if len(records) > shown else ""
    return (f"{len(records)} CSV record(s) span more than {LONG_RECORD_LINES} lines: {where}{more}. They were "
            "read as one record each (a quoted field may hold line breaks), but two stray quotes pair up the "
            "same way and turn the lines between them into one caption: check the quotes there")


def _has(con, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0])


def _line_numbers(path: Path, positions: list[int]) -> list[int]:
    """The line (header = 1) on which each record starts, from DuckDB's byte positions
    (sorted; they count from 1), in one streaming pass over the file."""
    out: list[int] = []
    with open(path, "rb") as fh:
        n, done = 0, 0
        for pos in positions:
            offset = max(pos - 1, 0)
            while done < offset:
                chunk = fh.read(min(READ_CHUNK, offset - done))
                if not chunk:
                    break
                n += chunk.count(b"\n")
                done += len(chunk)
            out.append(n + 1)
    return out
