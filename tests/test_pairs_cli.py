"""`iipa pairs build | import-authors | stats` in-process."""

from __future__ import annotations

import json

import pandas as pd

from iipa.pairs import read_pairs
from iipa.pairs.rules import RuleConfig
from pairs_helpers import random_crawl, reference_pairs


def test_build_with_rule_options_and_splits(tmp_path, run_cli):
    posts = random_crawl(seed=2)
    posts.to_csv(tmp_path / "posts.csv", index=False)
    code, out, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "out",
                             "--threshold", "0.9", "--max-gap-days", "5", "--split-by-user", "--seed", "1",
                             "--val", "0.1", "--test", "5")
    assert code == 0, err
    assert "Number of PDIPs" in out
    pairs = read_pairs(tmp_path / "out" / "pairs.parquet")
    want = reference_pairs(posts, RuleConfig(threshold=0.9, max_gap_days=5))
    assert set(zip(pairs.high_id, pairs.low_id, strict=True)) == want
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["rules"]["threshold"] == 0.9 and stats["split_by_user"] is True
    assert pairs.groupby("user_id")["split"].nunique().max() == 1
    code, out, _ = run_cli("pairs", "stats", tmp_path / "out")
    assert code == 0 and "Number of PDIPs" in out and "## Splits" in out
    code, out, _ = run_cli("pairs", "stats", tmp_path / "out" / "pairs.parquet", "--format", "json")
    assert code == 0 and json.loads(out)["table1"]["pairs"] == len(pairs)


def test_build_errors_exit_2(tmp_path, run_cli):
    random_crawl(n=5).drop(columns=["likes"]).to_csv(tmp_path / "posts.csv", index=False)
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o")
    assert code == 2 and "likes" in err
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", "--threshold", "0.4")
    assert code == 2 and "threshold" in err
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", "--log-base", "ten")
    assert code == 2 and "log-base" in err


def test_rejects_are_reported(tmp_path, run_cli):
    posts = random_crawl(n=50)
    posts["likes"] = posts["likes"].astype(object)
    posts.loc[0, "likes"] = "lots"
    posts.to_csv(tmp_path / "posts.csv", index=False)
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o")
    assert code == 1 and "1 of 50 posts rejected (non-numeric likes: 1)" in err  # part of the input: exit 1
    assert pd.read_csv(tmp_path / "o" / "rejects.csv")["post_id"].tolist() == [posts.post_id[0]]
    posts["likes"] = "lots"  # every row rejected: no build rests on nothing
    posts.to_csv(tmp_path / "posts.csv", index=False)
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", "--overwrite")
    assert code == 2 and "50 of 50 posts rejected" in err, err


def test_import_authors(tmp_path, run_cli):
    (tmp_path / "a.csv").write_text("Low_popularity,High_popularity\nBsLow1,BsHigh1\nBsLow2 , BsHigh2\n")
    code, out, err = run_cli("pairs", "import-authors", tmp_path / "a.csv", "-o", tmp_path / "a.parquet")
    assert code == 0, err
    pairs = read_pairs(tmp_path / "a.parquet")
    assert pairs[["high_id", "low_id", "split"]].values.tolist() == [["BsHigh1", "BsLow1", "test"],
                                                                     ["BsHigh2", "BsLow2", "test"]]
    (tmp_path / "bad.csv").write_text("low,high\na,b\n")
    code, _, err = run_cli("pairs", "import-authors", tmp_path / "bad.csv", "-o", tmp_path / "b.parquet")
    assert code == 2 and "Low_popularity" in err
    (tmp_path / "self.csv").write_text("Low_popularity,High_popularity\na,b\nc,c\n")
    code, _, err = run_cli("pairs", "import-authors", tmp_path / "self.csv", "-o", tmp_path / "b.parquet")
    assert code == 2 and "row 3" in err


def test_help(run_cli):
    for argv in (("pairs", "--help"), ("pairs", "build", "--help"), ("fetch", "--help")):
        code, out, _ = run_cli(*argv)
        assert code == 0 and "usage" in out


def test_engine_options_are_refused_by_the_other_engine(tmp_path, run_cli):
    random_crawl(n=20).to_csv(tmp_path / "posts.csv", index=False)
    for extra, named in ((["--master", "local[2]"], "--master"), (["--conf", "spark.task.cpus=1"], "--conf"),
                         (["--engine", "spark", "--threads", "2"], "--threads"),
                         (["--engine", "spark", "--memory-limit", "1GB"], "--memory-limit")):
        code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", *extra)
        assert code == 2 and f"{named}: not an option of the" in err, (extra, err)
        assert not (tmp_path / "o").exists()  # refused before anything was written
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", "--engine", "spark",
                           "--conf", "no-equals-sign")
    assert code == 2 and "KEY=VALUE" in err


def test_spark_master_and_conf_reach_the_session(tmp_path, run_cli, monkeypatch):
    """--master/--conf travel to the session the Spark engine starts (no JVM: the session
    factory is replaced; a real session's settings are checked in test_pairs_spark)."""
    import iipa.spark.session

    seen = {}

    def fake_get_session(master=None, conf=None, **kwargs):
        seen.update(master=master, conf=conf, **kwargs)
        raise iipa.spark.session.IIPAError("stop here")

    monkeypatch.setattr(iipa.spark.session, "get_session", fake_get_session)
    random_crawl(n=20).to_csv(tmp_path / "posts.csv", index=False)
    code, _, err = run_cli("pairs", "build", tmp_path / "posts.csv", "--out", tmp_path / "o", "--engine", "spark",
                           "--master", "local[1]", "--conf", "spark.sql.shuffle.partitions=3",
                           "--conf", "spark.driver.memory=1g")
    assert code == 2 and "stop here" in err
    assert seen["master"] == "local[1]" and seen["app"] == "iipa-pairs"
    assert seen["conf"] == {"spark.sql.shuffle.partitions": "3", "spark.driver.memory": "1g"}
