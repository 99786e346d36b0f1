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
    assert code == 0, err
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
