"""`iipa pairs build` loses nothing silently: bad CSV lines are rejected one by one while
the rest builds, and an earlier build in --out is not replaced without --overwrite."""

from __future__ import annotations

import csv
import json

import pandas as pd

from pairs_helpers import random_crawl


def _posts_with_bad_lines(tmp_path):
    path = tmp_path / "posts.csv"
    random_crawl(200, seed=1).to_csv(path, index=False)
    lines = path.read_bytes().splitlines()
    good = len(lines) - 1
    lines.insert(5, b"badenc,us\xffer1,2020-11-01T00:00:00Z,2021-01-01T00:00:00Z,image,120,1,hi")
    lines.insert(9, b"ragged1,user1,2020-11-01T00:00:00Z,2021-01-01T00:00:00Z,image,120,1,hi,EXTRA")
    lines.insert(12, b"ragged2,user1")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, good


def test_bad_lines_are_rejected_one_by_one_and_the_rest_builds(tmp_path, run_cli):
    posts, good = _posts_with_bad_lines(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli("pairs", "build", posts, "--out", out)
    assert code == 1, err  # the pairs rest on part of the posts
    stats = json.loads((out / "stats.json").read_text())
    assert stats["posts"]["rows"] == good + 3
    assert stats["posts"]["rejected"]["bad encoding"] == 1
    assert stats["posts"]["rejected"]["wrong number of fields"] == 2
    with open(out / "rejects.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_reason = {}
    for r in rows:
        by_reason.setdefault(r["reason"], []).append(json.loads(r["raw_row"]))
    assert sorted(x["line"] for x in by_reason["wrong number of fields"]) == [10, 13]
    assert [x["line"] for x in by_reason["bad encoding"]] == [6]
    assert all(r["source_file"].endswith("posts.csv") for r in rows)
    assert len(pd.read_parquet(out / "pairs.parquet")) > 0


def test_non_empty_out_needs_overwrite_and_a_file_is_refused(tmp_path, run_cli):
    posts = tmp_path / "posts.csv"
    random_crawl(120, seed=2).to_csv(posts, index=False)
    out = tmp_path / "out"
    assert run_cli("pairs", "build", posts, "--out", out)[0] == 0
    before = (out / "pairs.parquet").stat().st_mtime_ns
    code, _, err = run_cli("pairs", "build", posts, "--out", out)
    assert code == 2 and "--overwrite" in err and "pairs.parquet" in err, err
    assert (out / "pairs.parquet").stat().st_mtime_ns == before
    assert run_cli("pairs", "build", posts, "--out", out, "--overwrite")[0] == 0
    f = tmp_path / "afile"
    f.write_text("x")
    code, _, err = run_cli("pairs", "build", posts, "--out", f)
    assert code == 2 and "is a file" in err and "Traceback" not in err, err


# --- the fixed CSV dialect (csvread.py): line ends, quotes, long lines ---------------------

def _clean_crawl(tmp_path):
    """A crawl whose captions hold commas and line breaks (quoted), as real captions do."""
    df = random_crawl(300, seed=4)
    df.loc[::3, "caption"] = "hello, world"
    df.loc[1::7, "caption"] = "line one\nline two, #sun"
    path = tmp_path / "clean.csv"
    df.to_csv(path, index=False)
    return df, path


def _build(posts, out):
    from iipa.pairs.build import build_pairs

    res = build_pairs([posts], out)
    rejects = pd.read_csv(out / "rejects.csv", dtype=str, keep_default_na=False)
    return set(zip(res.pairs.high_id, res.pairs.low_id, strict=True)), res.stats["posts"], rejects


def _physical_lines(path):
    return path.read_bytes().split(b"\n")


def test_crlf_lines_mixed_with_lf_build_the_same_pairs(tmp_path):
    _, clean = _clean_crawl(tmp_path)
    want, posts, _ = _build(clean, tmp_path / "o0")
    assert posts["valid"] == 300 and want
    lines = _physical_lines(clean)
    variants = {
        "one_crlf": [ln + b"\r" if i == 10 else ln for i, ln in enumerate(lines)],
        "crlf_header_lf_rows": [ln + b"\r" if i == 0 else ln for i, ln in enumerate(lines)],
        "all_crlf": [ln + b"\r" if ln else ln for ln in lines],  # quoted line breaks become CRLF too
        "one_cr_only": lines[:5] + [lines[5] + b"\r" + lines[6]] + lines[7:],
    }
    for name, body in variants.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(b"\n".join(body))
        got, posts, rejects = _build(path, tmp_path / f"o_{name}")
        assert posts == {"rows": 300, "valid": 300, "rejected": {}, "rejected_total": 0}, name
        assert got == want, name
    # A CR-only file (classic Mac line ends, quoted line breaks too) reads like the LF file,
    # with the same line numbers: a short row on line 13 is rejected as line 13.
    cr_only = tmp_path / "cr_only.csv"
    cr_only.write_bytes(b"\r".join(lines[:12] + [b"short,row"] + lines[12:]))
    got, posts, rejects = _build(cr_only, tmp_path / "o_cr_only")
    assert posts["valid"] == 300 and posts["rejected"] == {"wrong number of fields": 1}, posts
    assert [json.loads(r)["line"] for r in rejects["raw_row"]] == [13]
    assert got == want


def test_an_unterminated_quote_rejects_only_its_line_and_keeps_every_row_after(tmp_path):
    df, clean = _clean_crawl(tmp_path)
    lines = _physical_lines(clean)
    # A post whose line is followed by unquoted lines: the quote swallows them (up to the next quote).
    i = next(i for i in range(30, 200) if b'"' not in lines[i] and b'"' not in lines[i + 1])
    broken_id = lines[i].split(b",")[0].decode()
    fields = lines[i].split(b",")
    lines[i] = b",".join(fields[:7] + [b'"broken caption'])
    path = tmp_path / "quote.csv"
    path.write_bytes(b"\n".join(lines))
    got, posts, rejects = _build(path, tmp_path / "o1")
    assert posts["rows"] == 300 and posts["valid"] == 299 and posts["rejected"] == {"bad quoting": 1}
    [raw] = [json.loads(r) for r in rejects["raw_row"]]
    assert raw == {"line": i + 1, "text": lines[i].decode()}
    # The same build without the broken post: every row after it was kept.
    df[df.post_id != broken_id].to_csv(tmp_path / "without.csv", index=False)
    assert got == _build(tmp_path / "without.csv", tmp_path / "o2")[0]


def test_a_swallowed_line_that_is_itself_bad_is_rejected_with_its_own_line(tmp_path):
    df, clean = _clean_crawl(tmp_path)
    lines = _physical_lines(clean)
    i = next(i for i in range(30, 200) if not any(b'"' in ln for ln in lines[i:i + 2]))
    lines[i] = b",".join(lines[i].split(b",")[:7] + [b'"unterminated'])
    lines[i + 1] = b"short,row"
    path = tmp_path / "two.csv"
    path.write_bytes(b"\n".join(lines))
    _, posts, rejects = _build(path, tmp_path / "o")
    assert posts["rows"] == 300 and posts["valid"] == 298
    got = sorted((r.reason, json.loads(r.raw_row)["line"]) for r in rejects.itertuples())
    assert got == [("bad quoting", i + 1), ("wrong number of fields", i + 2)]


def test_long_lines_are_read_and_overlong_ones_rejected_alone(tmp_path, monkeypatch):
    from iipa.pairs import csvread

    _, clean = _clean_crawl(tmp_path)
    lines = _physical_lines(clean)
    i = next(i for i in range(30, 200) if b'"' not in lines[i])
    lines[i] = b",".join(lines[i].split(b",")[:7] + [b"x" * 3_000_000])  # one 3 MB caption
    path = tmp_path / "long.csv"
    path.write_bytes(b"\n".join(lines))
    _, posts, _ = _build(path, tmp_path / "o1")
    assert posts["rows"] == 300 and posts["rejected_total"] == 0
    monkeypatch.setattr(csvread, "MAX_LINE_BYTES", 1_000_000)
    _, posts, rejects = _build(path, tmp_path / "o2")
    assert posts["valid"] == 299 and posts["rejected"] == {"line too long": 1}
    assert json.loads(rejects["raw_row"][0])["line"] == i + 1


def test_future_times_and_bad_optional_counts_are_rejected_not_clipped(tmp_path):
    df = random_crawl(40, seed=5).astype({"taken_at": str, "crawled_at": str})
    df["followers"] = "10"
    df.loc[0, "crawled_at"] = "9999-01-01T00:00:00Z"
    df.loc[1, "taken_at"] = "9998-01-01T00:00:00Z"
    df.loc[2, "followers"] = "-1"
    df.loc[3, "followers"] = "nan"
    df.loc[4, "followers"] = "1.5"
    df.loc[5, "followers"] = ""  # not given: fine
    df.to_csv(tmp_path / "p.csv", index=False)
    _, posts, rejects = _build(tmp_path / "p.csv", tmp_path / "o")
    assert posts["rejected"] == {"taken_at in the future": 1, "crawled_at in the future": 1,
                                 "non-numeric followers": 1, "negative followers": 1, "non-integer followers": 1}
    assert dict(zip(rejects.post_id, rejects.reason, strict=True)) == {
        df.post_id[0]: "crawled_at in the future", df.post_id[1]: "taken_at in the future",
        df.post_id[2]: "negative followers", df.post_id[3]: "non-numeric followers",
        df.post_id[4]: "non-integer followers"}


# --- what a broken quote swallows is read again from the file (csvrecords.py) ---------------

def _plain_crawl(tmp_path, n=800):
    """``n`` posts on one line each, no quote anywhere (line k + 1 holds post k)."""
    df = random_crawl(n, seed=6)
    df["caption"] = [f"caption{i} " + "x" * 60 for i in range(n)]  # ~110 bytes a line; two words
    path = tmp_path / "plain.csv"
    df.to_csv(path, index=False)
    assert b'"' not in path.read_bytes()
    return df, path, _physical_lines(path)


def _without(df, tmp_path, drop, name):
    path = tmp_path / f"{name}.csv"
    df.drop(index=drop).to_csv(path, index=False)
    return _build(path, tmp_path / f"o_{name}")[0]


def test_an_unterminated_quote_at_line_302_of_801_loses_no_good_row(tmp_path):
    df, _, lines = _plain_crawl(tmp_path)
    assert len(lines) == 802 and lines[-1] == b""  # 801 lines and the final LF
    lines[301] = b",".join(lines[301].split(b",")[:7] + [b'"broken caption'])  # line 302
    path = tmp_path / "quote302.csv"
    path.write_bytes(b"\n".join(lines))  # the quote swallows ~50 KB: DuckDB keeps 10,000 characters of it
    got, posts, rejects = _build(path, tmp_path / "o")
    assert posts == {"rows": 800, "valid": 799, "rejected": {"bad quoting": 1}, "rejected_total": 1}
    assert [json.loads(r)["line"] for r in rejects["raw_row"]] == [302]
    assert got and got == _without(df, tmp_path, [300], "without302")  # every good row after it was read


def test_a_second_quote_further_down_loses_no_row_either(tmp_path):
    df, _, lines = _plain_crawl(tmp_path)
    lines[301] = b",".join(lines[301].split(b",")[:7] + [b'"broken caption'])  # line 302
    lines[650] = lines[650][:-3] + b'"' + lines[650][-3:]  # line 651: a stray quote inside a caption
    path = tmp_path / "quotes.csv"
    path.write_bytes(b"\n".join(lines))
    got, posts, rejects = _build(path, tmp_path / "o")
    # Line 651's quote sits inside an unquoted field: a literal character (DuckDB's recovery
    # dropped lines 303-651 here); only line 302 is lost.
    assert posts["rows"] == 800 and posts["rejected"] == {"bad quoting": 1}, posts
    assert [json.loads(r)["line"] for r in rejects["raw_row"]] == [302]
    df.loc[649, "caption"] = df.loc[649, "caption"][:-3] + '"' + df.loc[649, "caption"][-3:]
    assert got and got == _without(df, tmp_path, [300], "without302")


def test_two_stray_quotes_100_lines_apart_are_one_record_kept_and_reported(tmp_path, capsys):
    from iipa.pairs.csvrecords import LONG_RECORD_LINES

    df, _, lines = _plain_crawl(tmp_path)
    lines[301] = b",".join(lines[301].split(b",")[:7] + [b'"broken caption'])  # opens at line 302
    lines[401] = lines[401] + b'"'  # closes at the end of line 402: a valid RFC 4180 field
    path = tmp_path / "pair.csv"
    path.write_bytes(b"\n".join(lines))
    got, posts, rejects = _build(path, tmp_path / "o")
    assert 101 > LONG_RECORD_LINES
    # Lines 302-402 are one record (its caption holds lines 303-402): kept, and reported with
    # where it starts and how many lines it spans, in stats.json and on stderr.
    assert posts["rows"] == 700 and posts["rejected_total"] == 0
    assert posts["long_records"] == [{"source_file": str(path), "line": 302, "lines": 101}]
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert any("lines 302-402" in w for w in stats["warnings"])
    assert "lines 302-402" in capsys.readouterr().err


def test_the_record_by_record_path_rejects_what_duckdb_rejects(tmp_path, monkeypatch):
    from iipa.pairs import csvread

    monkeypatch.setattr(csvread, "MAX_LINE_BYTES", 100_000)
    posts, _ = _posts_with_bad_lines(tmp_path)
    lines = _physical_lines(posts)
    lines.insert(30, b",".join(lines[30].split(b",")[:7] + [b"x" * 200_000]))  # line 31: too long
    lines.insert(40, b"q1,user1,2020-11-01T00:00:00Z,2021-01-01T00:00:00Z,image,120,1,\"bad ")  # line 41
    lines.insert(60, b"long1,user1,2020-11-01T00:00:00Z,2021-01-01T00:00:00Z,image,120,1,\"a"
                 + b"\n" * 11 + b"b\"")  # lines 61-72, kept: read after the bad quote, record by record
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\n".join(lines))
    _, posts_, rejects = _build(broken, tmp_path / "o")
    got = sorted((r.reason, json.loads(r.raw_row)["line"]) for r in rejects.itertuples())
    assert got == [("bad encoding", 6), ("bad quoting", 41), ("line too long", 31),
                   ("wrong number of fields", 10), ("wrong number of fields", 13)]
    assert posts_["long_records"] == [{"source_file": str(broken), "line": 61, "lines": 12}]
    assert posts_["rows"] == 200 + 3 + 2 + 1  # every record of the file: a row or a reject
