"""How iipa reads a posts CSV file: one fixed dialect, and bad records rejected one by one.

The dialect is fixed, never sniffed (a sniffer guesses from a sample, and one odd line can
make it guess wrong for the whole file): RFC 4180 — comma delimiter, double-quote quoting,
a quote inside a quoted field doubled (``""``), quoted fields may hold commas and line
breaks (real captions do); the first record is the header; UTF-8 (a BOM is ignored). Line
ends may be LF, CRLF or CR, mixed within one file (a file holding CR is read through a
normalised copy, CRLF and CR → LF, so line numbers are unchanged). A line may be up to
``MAX_LINE_BYTES`` long.

A record that cannot be parsed becomes a reject with the line it starts on (header = 1)
and a reason; reading resumes at the next line. DuckDB's reader (``store_rejects``) does
the parsing; when an unterminated quote swallowed the lines after it, DuckDB resumes only
after the next quote, so those lines are parsed again here, one record at a time: only the
broken line is lost (and any swallowed line that is itself malformed, as its own reject).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iipa.errors import IIPAError

MAX_LINE_BYTES = 32 * 1024 * 1024
MAX_REJECT_TEXT = 65536  # characters of a rejected record kept in rejects.csv
_CHUNK = 1 << 22
# DuckDB's error types → our reasons; the first one a record has, in this order, is its reason.
REASON_OF = {"INVALID ENCODING": "bad encoding", "UNQUOTED VALUE": "bad quoting",
             "LINE SIZE OVER MAXIMUM": "line too long", "TOO MANY COLUMNS": "wrong number of fields",
             "MISSING COLUMNS": "wrong number of fields"}
LINE_REASONS = ("bad encoding", "bad quoting", "line too long", "wrong number of fields", "unparsable row")


def sql_str(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def csv_header(path: Path) -> list[str]:
    """The column names of the header record; IIPAError for an empty or unreadable header."""
    def lines(fh) -> Iterator[str]:  # decoded line by line: a bad byte further down is a reject, not this
        raw = fh.readline(MAX_LINE_BYTES)
        yield raw.decode("utf-8-sig")
        while raw := fh.readline(MAX_LINE_BYTES):
            yield raw.decode("utf-8")

    try:
        with open(path, "rb") as fh:
            header = next(csv.reader(lines(fh), strict=True), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IIPAError(f"{path}: cannot read the CSV header (line 1): {exc}") from None
    if not header:
        raise IIPAError(f"{path}: empty CSV file (no header line)")
    names = [h.strip() for h in header]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or "" in names:
        raise IIPAError(f"{path}: the CSV header (line 1) has {'duplicate' if dup else 'empty'} column names"
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
def lf_copy(path: Path) -> Iterator[Path]:
    """``path`` itself when it holds no CR, else a temporary copy with CRLF and CR made LF
    (DuckDB's strict parser refuses a file whose line ends are mixed)."""
    with open(path, "rb") as fh:
        if not any(b"\r" in chunk for chunk in iter(lambda: fh.read(_CHUNK), b"")):
            yield path
            return
    with tempfile.TemporaryDirectory(prefix="iipa-csv-") as tmp:
        out = Path(tmp) / "posts.csv"
        with open(path, "rb") as src, open(out, "wb") as dst:
            carry = b""
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                chunk, carry = carry + chunk, b""
                if chunk.endswith(b"\r"):  # its LF may start the next chunk
                    chunk, carry = chunk[:-1], b"\r"
                dst.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            dst.write(carry.replace(b"\r", b"\n"))
        yield out


def load_csv(con, path: Path, table: str) -> None:
    """Read the CSV ``path`` into the new table ``table`` (text columns + ``filename``); its
    bad records go to the table ``csv_bad_lines`` (reason, source_file, line, csv_line),
    and the lines an unterminated quote swallowed are parsed again and kept when valid."""
    columns = csv_header(path)
    con.execute("CREATE TEMP TABLE IF NOT EXISTS csv_bad_lines "
                "(reason VARCHAR, source_file VARCHAR, line BIGINT, csv_line VARCHAR)")
    for name in (table, f"{table}_rej_errors", f"{table}_rej_scans"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    with lf_copy(path) as readable:
        con.execute(f"CREATE TEMP TABLE {table} AS "
                    f"{read_csv_sql(readable, columns, source=path, rejects=table + '_rej')}")
        errors = [] if not _has(con, f"{table}_rej_errors") else con.execute(
            f"SELECT line_byte_position, list(error_type), any_value(csv_line) FROM {table}_rej_errors "
            "GROUP BY line_byte_position ORDER BY 1").fetchall()
        starts = _line_numbers(readable, [pos for pos, _, _ in errors])
    bad, good = [], []
    for (_, types, text), first in zip(errors, starts, strict=True):
        reason = next((REASON_OF[t] for t in REASON_OF if t in types), "unparsable row")
        lines = text.split("\n")
        bad.append((reason, str(path), first, (lines[0] if reason == "bad quoting" else text)[:MAX_REJECT_TEXT]))
        if reason == "bad quoting":  # resume at the next line: parse what the quote swallowed
            more_bad, more_good = reparse(lines[1:], first + 1, len(columns), str(path))
            bad += more_bad
            good += more_good
    if bad:
        con.executemany("INSERT INTO csv_bad_lines VALUES (?, ?, ?, ?)", bad)
    if good:
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", good)


def reparse(lines: list[str], first_line: int, n_fields: int, source: str) -> tuple[list[tuple], list[list]]:
    """Parse ``lines`` (numbered from ``first_line``) record by record in the same dialect:
    (rejects, rows). A record with bad quoting is rejected alone and parsing resumes at the
    line after its first one; a record with the wrong number of fields is rejected whole."""
    bad: list[tuple] = []
    good: list[list] = []
    start = 0
    while start < len(lines):
        pos = start

        def feed() -> Iterator[str]:
            nonlocal pos
            while pos < len(lines):
                pos += 1
                yield lines[pos - 1] + "\n"

        reader = csv.reader(feed(), strict=True)
        start = len(lines)
        while True:
            first = pos
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error:
                bad.append(("bad quoting", source, first_line + first, lines[first][:MAX_REJECT_TEXT]))
                start = first + 1
                break
            if not record:
                continue  # a blank line
            if len(record) != n_fields:
                text = "\n".join(lines[first:pos])[:MAX_REJECT_TEXT]
                bad.append(("wrong number of fields", source, first_line + first, text))
            else:
                good.append([v if v != "" else None for v in record] + [source])
    return bad, good


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
                chunk = fh.read(min(_CHUNK, offset - done))
                if not chunk:
                    break
                n += chunk.count(b"\n")
                done += len(chunk)
            out.append(n + 1)
    return out
