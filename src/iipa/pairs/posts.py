"""Posts for consumers that need only some of the columns (the absolute-IPA baseline).

The same reader (files, folders, globs; Parquet, CSV, JSONL), the same checks, reject
reasons and rejects file as the pair build (schema.py), applied to the columns a consumer
needs: a bad row becomes a reject with its reason, never a silent drop or a failed run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from iipa.pairs.schema import (
    DUP_ORDER,
    OPTIONAL_COUNTS,
    PostsSummary,
    _number_checks,
    collect_bad_lines,
    optional_count_checks,
    register_posts,
    summarise_checked,
    write_rejects,
)

COUNT_COLUMNS = ("likes", "comments")


def read_posts_columns(posts, *, required: Sequence[str] = ("post_id", "likes"),
                       rejects_path: str | os.PathLike | None = None) -> tuple[pd.DataFrame, PostsSummary]:
    """Valid, de-duplicated posts with every input column, ``post_id`` as text and the counts
    (likes, comments, when present) as integers; plus the summary of what was rejected."""
    import duckdb

    con = duckdb.connect()
    try:
        types = register_posts(con, posts, required=tuple(required))
        counts = [c for c in COUNT_COLUMNS if c in types]
        # Negative, NaN or fractional followers/following/user_posts are rejects, not clipped.
        checks = "".join(_number_checks(c) for c in counts) + optional_count_checks(types)
        casts = ", ".join(f"TRY_CAST(TRY_CAST({c} AS DOUBLE) AS BIGINT) AS {c}" for c in counts)
        raw = "".join(f", {c} := CAST({c} AS VARCHAR)" for c in (*counts, *OPTIONAL_COUNTS) if c in types)
        con.execute(f"""CREATE TEMP TABLE checked AS
            SELECT * EXCLUDE (pid) REPLACE (pid AS post_id{", " + casts if casts else ""}), filename AS source_file,
                   CASE WHEN reason IS NOT NULL THEN
                        CAST(to_json(struct_pack(post_id := CAST(post_id AS VARCHAR){raw})) AS VARCHAR) END AS raw_row
            FROM (SELECT *, row_number() OVER () AS input_row, NULLIF(trim(CAST(post_id AS VARCHAR)), '') AS pid,
                         CASE WHEN pid IS NULL THEN 'missing post_id' {checks} END AS reason FROM raw_posts)""")
        if "user_id" not in types:
            con.execute("ALTER TABLE checked ADD COLUMN user_id VARCHAR")
        order = ", ".join(t for t in DUP_ORDER.split(", ") if t.split()[0] in (*counts, "source_file"))
        con.execute(f"""CREATE TEMP TABLE dup_rows AS SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY post_id ORDER BY {order}, input_row) AS rn
            FROM checked WHERE reason IS NULL) WHERE post_id IN (
              SELECT post_id FROM checked WHERE reason IS NULL GROUP BY post_id HAVING count(*) > 1)""")
        collect_bad_lines(con)
        if rejects_path is not None:
            write_rejects(con, rejects_path)
        summary = summarise_checked(con, PostsSummary(types=types))
        drop = "reason, source_file, raw_row, filename" + ("" if "user_id" in types else ", user_id")
        df = con.execute(f"""SELECT * EXCLUDE ({drop}, input_row) FROM (
            SELECT * FROM checked WHERE reason IS NULL AND post_id NOT IN (SELECT post_id FROM dup_rows)
            UNION ALL BY NAME SELECT * EXCLUDE (rn) FROM dup_rows WHERE rn = 1) ORDER BY input_row""").df()
    finally:
        con.close()
    return df, summary

