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
