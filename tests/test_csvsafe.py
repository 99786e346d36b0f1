"""Formula injection: no text cell of a CSV we write starts with = + - @ tab or CR, and
numbers stay numbers."""

from __future__ import annotations

import csv
import io

import duckdb
import pandas as pd

from iipa.csvsafe import SafeWriter, frame_to_csv, neutralise, sql_neutralise
from iipa.output import write_rows
from iipa.pairs import schema

NASTY = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-1+2", "@SUM(1+1)", "\tTAB"]


def _cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]


def _is_safe(cell: str) -> bool:
    return not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_neutralise_text_not_numbers():
    assert [neutralise(v) for v in NASTY + ["\rCR"]] == ["'" + v for v in NASTY + ["\rCR"]]
    assert neutralise("plain") == "plain" and neutralise(-0.5) == -0.5 and neutralise(-3) == -3
    assert neutralise(None) is None


def test_frame_and_rows_writers():
    df = pd.DataFrame({"id": NASTY, "score": [-0.25] * len(NASTY)})
    buf = io.StringIO()
    frame_to_csv(df, buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))[1:]
    assert all(_is_safe(r[0]) for r in rows) and [r[1] for r in rows] == ["-0.25"] * len(NASTY)
    out = io.StringIO()
    write_rows([{"path": v, "score": -1.5} for v in NASTY], ["path", "score"], "csv", out)
    cells = _cells(out.getvalue())
    assert all(_is_safe(c) for c in cells if c != "-1.5") and cells.count("-1.5") == len(NASTY)
    out = io.StringIO()
    SafeWriter(out).writerow(NASTY + [-2])
    assert all(_is_safe(c) for c in _cells(out.getvalue())[:-1]) and _cells(out.getvalue())[-1] == "-2"


def test_sql_rule_matches_python():
    con = duckdb.connect()
    got = [con.execute(f"SELECT {sql_neutralise('v')} FROM (SELECT ?::VARCHAR AS v)", [v]).fetchone()[0]
           for v in NASTY + ["ok", None]]
    assert got == [neutralise(v) for v in NASTY] + ["ok", None]


def test_rejects_csv_carries_no_formula(tmp_path):
    rows = [{"post_id": pid, "user_id": "=cmd|' /C calc'!A0", "taken_at": "2020-01-01T00:00:00Z",
             "crawled_at": "2020-06-01T00:00:00Z", "media_type": "image", "likes": "many", "comments": 1,
             "caption": "x"} for pid in NASTY]
    path = tmp_path / "posts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    con = duckdb.connect()
    schema.load_checked_posts(con, [path], rejects_path=tmp_path / "rejects.csv")
    text = (tmp_path / "rejects.csv").read_text()
    cells = _cells(text)
    assert len(cells) == 5 * (len(NASTY) + 1)
    assert all(_is_safe(c) for c in cells), [c for c in cells if not _is_safe(c)]
    assert "'=HYPERLINK" in text and "'@SUM(1+1)" in text
