"""The posts table (crawl metadata): reading, validation, rejects, derived caption features.

Columns (Parquet, CSV or JSONL; several files are combined by column name):

required  post_id, user_id, taken_at, crawled_at (or a global ``crawled_at=``), media_type
          (image | video | carousel), likes, comments, caption (may be empty)
optional  hashtags, mentions (lists, or strings of tags; else parsed from the caption),
          image_url, followers, following, user_posts

A bad row is never dropped silently: it goes to the rejects table with the first reason
that applies (``REJECT_REASONS``) and is counted in the summary. Validation runs inside
DuckDB so that inputs larger than memory stream from disk. CSV files are read in one
fixed dialect (``csvread.py``); a record that cannot become a row at all is rejected on
its own with its file, line number and text while the rest of the file is read. Times
more than a day after the build (``FUTURE_SLACK``) are rejects, not clipped; so are
negative, NaN or fractional optional counts (followers, following, user_posts).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from iipa.csvsafe import sql_neutralise
from iipa.errors import IIPAError
from iipa.fileio import atomic_path
from iipa.pairs.csvread import LINE_REASONS, csv_header, load_csv, long_csv_records, read_csv_sql
from iipa.pairs.rules import DAY_US
from iipa.pairs.tags import GIVEN_TAG_RE, HASHTAG_RE, MENTION_RE, WORD_TOKEN_RE

REQUIRED_COLUMNS = ("post_id", "user_id", "taken_at", "crawled_at", "media_type", "likes", "comments", "caption")
OPTIONAL_COLUMNS = ("hashtags", "mentions", "image_url", "followers", "following", "user_posts")
MEDIA_TYPES = ("image", "video", "carousel")
REJECT_REASONS = (
    *LINE_REASONS,  # CSV records that never became rows (csvread.py)
    "missing post_id", "missing user_id", "unparsable taken_at", "unparsable crawled_at",
    "taken_at in the future", "crawled_at in the future", "taken_at after crawled_at", "missing likes", "non-numeric likes", "negative likes",
    "non-integer likes", "missing comments", "non-numeric comments", "negative comments",
    "non-integer comments", "unknown media_type",
    *(f"{kind} {c}" for c in ("followers", "following", "user_posts")
      for kind in ("non-numeric", "negative", "non-integer")),
    "duplicate post_id",
)
OPTIONAL_COUNTS = ("followers", "following", "user_posts")
FUTURE_SLACK_US = DAY_US  # a time after the build + 1 day is a reject (clock skew allowed)
# Which copy of a duplicated post_id is kept: the most recent observation first.
DUP_ORDER = "crawled_us DESC, likes DESC, comments DESC, user_id, taken_us, media_type, caption_s, source_file"
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv",
            ".jsonl": "json", ".ndjson": "json", ".json": "json"}



@dataclass
class PostsSummary:
    """Counts for the build summary: nothing disappears without a number."""

    rows: int = 0
    valid: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # input column types (not reported)
    # CSV records kept although they span many lines (csvread.py): {source_file, line, lines}
    long_records: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {"rows": self.rows, "valid": self.valid, "rejected": dict(self.rejected),
               "rejected_total": sum(self.rejected.values())}
        if self.long_records:
            out["long_records"] = [dict(r) for r in self.long_records]
        return out


def expand_post_files(specs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Files, folders (their Parquet/CSV/JSONL files, recursively) and globs → sorted paths."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not found:
                raise IIPAError(f"{p}: no .parquet, .csv or .jsonl files in this folder")
            out.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise IIPAError(f"{p}: unsupported posts file type (use .parquet, .csv or .jsonl)")
            out.append(p)
        elif any(ch in str(spec) for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(spec), recursive=True) if Path(f).suffix.lower() in SUFFIXES)
            if not found:
                raise IIPAError(f"{spec}: no posts files match this pattern")
            out.extend(found)
        else:
            raise IIPAError(f"{p}: no such posts file")
    if not out:
        raise IIPAError("no posts files given")
    return out


def _sql_str(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _json_columns(file_list_sql: str) -> list[str]:
    """Column names of JSONL files (DuckDB's detection over a sample of each file)."""
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_json({file_list_sql}, format='newline_delimited', "
                           "union_by_name=true)").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def reader_sql(files: list[Path], *, csv_tables: Sequence[str] = ()) -> str:
    """One SELECT over ``files`` united by column name, every CSV/JSONL field as text.
    ``csv_tables``: CSV files already loaded by :func:`csvread.load_csv` (with their rejects)."""
    by_kind: dict[str, list[Path]] = {}
    for f in files:
        by_kind.setdefault(SUFFIXES[f.suffix.lower()], []).append(f)
    parts = [f"SELECT * FROM {t}" for t in csv_tables]
    for kind, group in by_kind.items():
        lst = "[" + ", ".join(_sql_str(f) for f in group) + "]"
        if kind == "parquet":
            parts.append(f"SELECT * FROM read_parquet({lst}, union_by_name=true, filename=true)")
        elif kind == "csv":
            # The fixed dialect, every field as text (a stray "abc" in likes must become a
            # reject, not a failed read); one read per file, united by name below.
            parts += [read_csv_sql(f, csv_header(f)) for f in group]
        else:
            # Every field as text, like CSV: a stray "abc" after the type-detection sample
            # must become a reject, not a failed read (lists arrive as JSON text).
            cols = _json_columns(lst)
            spec = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in cols) + "}"
            parts.append(f"SELECT * FROM read_json({lst}, format='newline_delimited', filename=true, columns={spec})")
    return " UNION ALL BY NAME ".join(parts)


def register_posts(con, posts, *, crawled_at: datetime | str | None = None,
                   required: Sequence[str] = REQUIRED_COLUMNS) -> dict[str, str]:
    """Expose the input posts as the view ``raw_posts``; check required columns.

    ``posts`` is a list of files/folders/globs or a pandas DataFrame. Returns the column
    types. Raises IIPAError naming every missing required column.
    """
    if isinstance(posts, pd.DataFrame):
        df = posts.copy()
        df["filename"] = "<dataframe>"
        con.register("_posts_df", df)
        con.execute("CREATE OR REPLACE TEMP VIEW raw_posts AS SELECT * FROM _posts_df")
        where = "the posts table"
    else:
        files = expand_post_files(posts)
        csv_files = [f for f in files if SUFFIXES[f.suffix.lower()] == "csv"]
        con.execute("CREATE OR REPLACE TEMP TABLE csv_bad_lines "
                    "(reason VARCHAR, source_file VARCHAR, line BIGINT, csv_line VARCHAR)")
        tables = [f"csv_posts_{i}" for i in range(len(csv_files))]
        try:
            for f, table in zip(csv_files, tables, strict=True):
                load_csv(con, f, table)  # read once here: its bad lines are known before validation
            rest = [f for f in files if f not in csv_files]
            con.execute(f"CREATE OR REPLACE TEMP VIEW raw_posts AS {reader_sql(rest, csv_tables=tables)}")
        except IIPAError:
            raise
        except Exception as exc:  # noqa: BLE001 - reader errors are bad input files
            raise IIPAError(f"cannot read posts from {', '.join(map(str, files))}: {exc}") from None
        where = ", ".join(map(str, files))
    types = {r[0]: r[1] for r in con.execute("DESCRIBE raw_posts").fetchall()}
    check_required_columns(types, crawled_at=crawled_at, where=where, required=required)
    return types


def check_required_columns(columns, *, crawled_at, where: str, required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise naming every required posts column missing from ``columns`` (every engine)."""
    needed = [c for c in required if not (c == "crawled_at" and crawled_at is not None)]
    missing = [c for c in needed if c not in columns]
    if missing:
        hint = " (or pass a global crawled_at / --crawled-at)" if "crawled_at" in missing else ""
        raise IIPAError(f"{where}: posts lack required column(s) {', '.join(missing)}{hint}; "
                        f"found {', '.join(c for c in columns if c != 'filename')}")


def _time_expr(col: str, types: dict[str, str]) -> str:
    """Microseconds since the epoch; ISO 8601 text, timestamps or Unix seconds; NULL if unparsable."""
    d = f"TRY_CAST({col} AS DOUBLE)"
    # Out-of-range seconds must become a reject, not an error that stops the whole build.
    seconds = f"CASE WHEN abs({d}) < 1e11 THEN epoch_us(to_timestamp({d})) END"
    t = types.get(col, "")
    if t.startswith(("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "DECIMAL", "HUGEINT", "UBIGINT")):
        return seconds
    return f"COALESCE(epoch_us(TRY_CAST({col} AS TIMESTAMPTZ)), {seconds})"


def _tags_expr(col: str, regex: str, types: dict[str, str]) -> str:
    sigil = regex[0]
    # The strpos guard skips the regex for the many captions without the sigil.
    from_caption = (f"CASE WHEN strpos(caption_s, '{sigil}') > 0 THEN "
                    f"regexp_extract_all(lower(caption_s), '{regex}', 1) ELSE [] END")
    t = types.get(col)
    if t is None:
        return from_caption
    if t.endswith("[]"):
        given = (f"list_filter(list_transform({col}, lambda x: lower(trim(ltrim(trim(CAST(x AS VARCHAR)), '#@')))),"
                 " lambda x: x <> '')")
    else:  # a string such as "#a #b", "a,b" or '["a", "b"]'
        given = f"regexp_extract_all(lower(CAST({col} AS VARCHAR)), '{GIVEN_TAG_RE}')"
    return f"COALESCE({given}, {from_caption})"


def caption_features_sql(types: dict[str, str], source: str) -> str:
    """SELECT over ``source`` (with ``caption_s`` and the optional tag columns) adding tag_key,
    mention_key, n_hashtags, n_mentions, n_words and no_caption (rules.py semantics)."""
    tag_cols = ", ".join(c for c in ("hashtags", "mentions") if c in types)
    return f"""
    SELECT * EXCLUDE (tag_list, mention_list, text_only{", " + tag_cols if tag_cols else ""}),
      array_to_string(list_sort(tag_list), ' ') AS tag_key, array_to_string(list_sort(mention_list), ' ') AS mention_key,
      len(tag_list) AS n_hashtags, len(mention_list) AS n_mentions,
      len(regexp_extract_all(text_only, '{WORD_TOKEN_RE}')) AS n_words,
      trim(text_only) = '' AND len(tag_list) = 0 AND len(mention_list) = 0 AS no_caption
    FROM (
      SELECT *, {_tags_expr("hashtags", HASHTAG_RE, types)} AS tag_list,
        {_tags_expr("mentions", MENTION_RE, types)} AS mention_list,
        CASE WHEN strpos(caption_s, '#') > 0 OR strpos(caption_s, '@') > 0
             THEN regexp_replace(caption_s, '{HASHTAG_RE}|{MENTION_RE}', ' ', 'g') ELSE caption_s END AS text_only
      FROM {source})
    """


def _number_checks(col: str, *, optional: bool = False) -> str:
    """CASE branches for a count; an ``optional`` count may be empty (NULL), never wrong."""
    d = f"TRY_CAST({col} AS DOUBLE)"
    # A NULL result would end the CASE: an optional count tests "is given" in each branch.
    given = f"{col} IS NOT NULL AND " if optional else ""
    missing = "" if optional else f"WHEN {col} IS NULL THEN 'missing {col}' "
    return (f"{missing}WHEN {given}({d} IS NULL OR isnan({d})) THEN 'non-numeric {col}' "
            f"WHEN {given}{d} < 0 THEN 'negative {col}' "
            f"WHEN {given}({d} <> floor({d}) OR {d} > 9e18) THEN 'non-integer {col}' ")


def optional_count_checks(types) -> str:
    """The CASE branches for the optional counts present in ``types``."""
    return "".join(_number_checks(c, optional=True) for c in OPTIONAL_COUNTS if c in types)


def now_us() -> int:
    """The build time, microseconds since the epoch (UTC)."""
    return int(datetime.now(timezone.utc).timestamp() * 1_000_000)


def checked_posts_sql(types: dict[str, str], *, crawled_at: datetime | str | None = None,
                      now: int | None = None) -> str:
    """SQL giving every raw row its typed fields, caption features and reject reason (or NULL).
    ``now``: the build time in µs (default: the clock), for the "in the future" checks."""
    crawled = _time_expr("crawled_at", types) if "crawled_at" in types else "NULL"
    if crawled_at is not None:
        crawled = f"COALESCE({crawled}, epoch_us(TIMESTAMPTZ {_sql_str(pd.Timestamp(crawled_at).isoformat())}))"
    media = "lower(trim(CAST(media_type AS VARCHAR)))"
    future = (now_us() if now is None else now) + FUTURE_SLACK_US
    raw_fields = ", ".join(f"{c} := CAST({c} AS VARCHAR)" for c in (*REQUIRED_COLUMNS, *OPTIONAL_COUNTS)
                           if c in types and c != "caption")
    tag_cols = "".join(f", {c}" for c in ("hashtags", "mentions") if c in types)
    return f"""
    WITH base AS (
      SELECT *, NULLIF(trim(CAST(post_id AS VARCHAR)), '') AS pid, NULLIF(trim(CAST(user_id AS VARCHAR)), '') AS uid,
             {_time_expr("taken_at", types)} AS taken_us, {crawled} AS crawled_us
      FROM raw_posts
    ), checked AS (
      SELECT *,
        CASE
          WHEN pid IS NULL THEN 'missing post_id'
          WHEN uid IS NULL THEN 'missing user_id'
          WHEN taken_us IS NULL THEN 'unparsable taken_at'
          WHEN crawled_us IS NULL THEN 'unparsable crawled_at'
          WHEN taken_us > {future} THEN 'taken_at in the future'
          WHEN crawled_us > {future} THEN 'crawled_at in the future'
          WHEN taken_us > crawled_us THEN 'taken_at after crawled_at'
          {_number_checks("likes")}
          {_number_checks("comments")}
          WHEN {media} IS NULL OR {media} NOT IN ({", ".join(map(_sql_str, MEDIA_TYPES))}) THEN 'unknown media_type'
          {optional_count_checks(types)}
        END AS reason
      FROM base
    )
    SELECT pid AS post_id, uid AS user_id, taken_us, crawled_us, {media} AS media_type,
      TRY_CAST(TRY_CAST(likes AS DOUBLE) AS BIGINT) AS likes, TRY_CAST(TRY_CAST(comments AS DOUBLE) AS BIGINT) AS comments,
      COALESCE(CAST(caption AS VARCHAR), '') AS caption_s{tag_cols}, reason, filename AS source_file,
      CASE WHEN reason IS NOT NULL THEN CAST(to_json(struct_pack({raw_fields})) AS VARCHAR) END AS raw_row
    FROM checked
    """


def load_checked_posts(con, posts, *, crawled_at=None, rejects_path: str | os.PathLike | None = None) -> PostsSummary:
    """Validate the input into the table ``posts`` (valid, de-duplicated, typed rows).

    Duplicate post ids keep the most recent observation (latest crawled_at, then most likes,
    then most comments, then the other fields in order); the others become rejects. Rejected
    rows (reason, post_id, user_id, source file, the raw fields as JSON) go to ``rejects_path``
    (CSV) when given.
    """
    types = register_posts(con, posts, crawled_at=crawled_at)
    # One pass over the input files: casting, validating and parsing every row again for
    # each later pass costs more than keeping the typed rows (DuckDB spills them to disk).
    con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {checked_posts_sql(types, crawled_at=crawled_at)}")
    con.execute(f"""
      CREATE OR REPLACE TEMP TABLE dup_rows AS
      SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY post_id ORDER BY {DUP_ORDER}) AS rn
        FROM checked WHERE reason IS NULL AND post_id IN (
          SELECT post_id FROM checked WHERE reason IS NULL GROUP BY post_id HAVING count(*) > 1))""")
    con.execute("""
      CREATE OR REPLACE TEMP VIEW posts AS
      SELECT * EXCLUDE (reason, source_file, raw_row) FROM checked
      WHERE reason IS NULL AND post_id NOT IN (SELECT post_id FROM dup_rows)
      UNION ALL SELECT * EXCLUDE (reason, source_file, raw_row, rn) FROM dup_rows WHERE rn = 1""")
    collect_bad_lines(con)
    summary = summarise_checked(con, PostsSummary(types=types))
    if rejects_path is not None:
        write_rejects(con, rejects_path)
    return summary


def summarise_checked(con, summary: PostsSummary) -> PostsSummary:
    """Fill ``summary`` from the tables ``bad_lines`` (lines that never became rows),
    ``checked`` (a reason per row) and ``dup_rows``."""
    for reason, n in con.execute("SELECT reason, count(*) FROM bad_lines GROUP BY 1").fetchall():
        summary.rows += n
        summary.rejected[reason] = n
    for reason, n in con.execute("SELECT reason, count(*) FROM checked GROUP BY 1").fetchall():
        summary.rows += n
        if reason is None:
            summary.valid += n
        else:
            summary.rejected[reason] = n
    summary.long_records = long_csv_records(con)
    n_dup = con.execute("SELECT count(*) FROM dup_rows WHERE rn > 1").fetchone()[0]
    if n_dup:
        summary.valid -= n_dup
        summary.rejected["duplicate post_id"] = n_dup
    summary.rejected = {r: summary.rejected[r] for r in REJECT_REASONS if r in summary.rejected}
    return summary


def collect_bad_lines(con) -> None:
    """CSV records that never became rows (``csvread.load_csv``) as table ``bad_lines``."""
    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'csv_bad_lines'").fetchone()[0]
    source = "csv_bad_lines" if have else (
        "(SELECT NULL::VARCHAR AS reason, NULL::VARCHAR AS source_file, 0::BIGINT AS line, "
        "NULL::VARCHAR AS csv_line WHERE false)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE bad_lines AS SELECT reason, source_file, line, csv_line FROM {source}")


def write_rejects(con, path: str | os.PathLike) -> Path:
    """Rejected rows with their reason, as CSV (written atomically)."""
    path = Path(path)
    cells = ", ".join(f"{sql_neutralise(c)} AS {c}" for c in ("reason", "post_id", "user_id", "source_file", "raw_row"))
    with atomic_path(path) as tmp:
        con.execute(f"""COPY (SELECT {cells} FROM (
            SELECT reason, post_id, user_id, source_file, raw_row FROM checked WHERE reason IS NOT NULL
            UNION ALL SELECT 'duplicate post_id', post_id, user_id, source_file, NULL FROM dup_rows WHERE rn > 1
            UNION ALL SELECT reason, NULL, NULL, source_file,
              CAST(to_json(struct_pack(line := line, text := csv_line)) AS VARCHAR) FROM bad_lines
            ORDER BY reason, post_id NULLS FIRST, source_file, raw_row)) TO {_sql_str(tmp)} (HEADER, DELIMITER ',')""")
    return path
