"""The Spark engine builds the identical pair set as DuckDB (pyspark local[2]), from posts
named by URIs, in folders of many files, with every time type; one session for the module."""

from __future__ import annotations

import pandas as pd
import pytest

from _spark import require_spark
from iipa.pairs import build_pairs
from pairs_helpers import TIME_TYPES, random_crawl, time_typed_posts

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark(spark_session):
    """The run's one Spark session (conftest), started once for every Spark test module."""
    return spark_session


def test_session_has_the_pairs_defaults_and_the_conf_over_them(spark):
    from iipa.pairs.spark import PAIRS_CONF, get_spark

    conf = spark.sparkContext.getConf()
    assert conf.get("spark.master") == "local[2]" and conf.get("spark.app.name") == "iipa-pairs"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "5"  # --conf over PAIRS_CONF's 8
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == PAIRS_CONF[
        "spark.sql.execution.arrow.pyspark.enabled"]
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert "TieredStopAtLevel" not in conf.get("spark.driver.defaultJavaOptions", "")  # the JVM's own JIT: the joins run there
    assert get_spark("local[1]") is spark  # an active session is used as it is


def test_spark_and_duckdb_build_the_same_pairs(spark, tmp_path):
    posts = random_crawl(n=700, seed=4)
    posts.loc[3, "likes"] = -5  # a reject
    posts.loc[5, "caption"] = "नमस्ते #हिंदी @Ann.Lee. कैसे"  # Unicode tags and words
    posts = pd.concat([posts, posts.iloc[[10]].assign(likes=1, crawled_at=posts.crawled_at[10] - pd.Timedelta("1D"))])
    path = tmp_path / "posts.parquet"
    posts.to_parquet(path, coerce_timestamps="us", allow_truncated_timestamps=True)  # Spark reads no ns
    duck = build_pairs([path], tmp_path / "duck", seed=2, split_by_user=True)
    spk = build_pairs([path], tmp_path / "spark", seed=2, split_by_user=True, engine="spark")
    assert len(duck.pairs) > 20
    pd.testing.assert_frame_equal(spk.pairs, duck.pairs, check_exact=False, rtol=1e-12)
    for key in ("table1", "funnel", "posts", "splits"):
        assert spk.stats[key] == pytest.approx(duck.stats[key]) if key == "table1" else spk.stats[key] == duck.stats[key]
    assert duck.stats["posts"]["rejected"] == {"negative likes": 1, "duplicate post_id": 1}
    rej = pd.read_csv(tmp_path / "spark" / "rejects.csv")
    assert list(rej.columns) == list(pd.read_csv(tmp_path / "duck" / "rejects.csv").columns)
    assert sorted(rej["reason"]) == ["duplicate post_id", "negative likes"]
    assert '"likes":"-5"' in rej.set_index("reason").loc["negative likes", "raw_row"]


def test_spark_submit_master_is_the_builds(tmp_path):
    """Under spark-submit the build runs on spark-submit's master (it used to force local[2]),
    with --conf applied, and stats.json says where it ran."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyspark

    import iipa.cli

    require_spark("iipa.pairs.spark")
    posts = random_crawl(n=300, seed=5)
    posts.to_parquet(tmp_path / "posts.parquet", coerce_timestamps="us", allow_truncated_timestamps=True)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(submit), "--master", "local[1]", "--conf", "spark.ui.showConsoleProgress=false",
                           iipa.cli.__file__, "pairs", "build", str(tmp_path / "posts.parquet"), "--engine", "spark",
                           "--conf", "spark.sql.shuffle.partitions=3", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["engine"] == "spark" and stats["engine_info"]["master"] == "local[1]"
    assert stats["engine_info"]["spark_version"] == pyspark.__version__
    duck = build_pairs([tmp_path / "posts.parquet"], tmp_path / "duck")
    assert stats["table1"]["pairs"] == len(duck.pairs) > 0


@pytest.mark.parametrize("kind", TIME_TYPES)
def test_spark_reads_every_time_type(spark, kind, tmp_path):
    """The twin of test_pairs_timestamps' DuckDB test: naive timestamps (TIMESTAMP_NTZ, what
    pandas writes from datetime64), dates, epoch seconds and ISO text mean what DuckDB reads."""
    path, expected, n_bad = time_typed_posts(kind, tmp_path)
    res = build_pairs([path], None, engine="spark")
    assert len(expected) > 10
    assert set(zip(res.pairs["high_id"], res.pairs["low_id"], strict=True)) == expected
    assert res.stats["posts"]["rejected"] == ({"unparsable taken_at": n_bad} if n_bad else {})


def test_posts_as_file_uris_in_a_folder_of_many_files(spark, tmp_path):
    """file:// URIs (as hdfs:// and s3a:// go through Hadoop's FileSystem), a folder of many
    small Parquet, CSV and JSON lines files with broken records, the output to a URI."""
    posts = random_crawl(n=600, seed=11)
    posts["taken_at"] = posts["taken_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # as text in every format
    posts["crawled_at"] = posts["crawled_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    folder = tmp_path / "crawl dir"  # a space: URIs and paths must agree on it
    (folder / "sub").mkdir(parents=True)
    for i, chunk in enumerate(posts.groupby(posts.index // 20)):
        part = chunk[1]
        where = folder / "sub" if i % 2 else folder
        if i % 3 == 0:
            part.to_parquet(where / f"p{i}.parquet")
        elif i % 3 == 1:
            part.to_csv(where / f"p{i}.csv", index=False)
        else:
            part.to_json(where / f"p{i}.jsonl", orient="records", lines=True)
    duck = build_pairs([folder], tmp_path / "duck")  # DuckDB stops at a line that is not JSON
    with (folder / "sub" / "p1.csv").open("a") as fh:
        fh.write('bad1,"unterminated\n')
    with (folder / "p2.jsonl").open("a") as fh:
        fh.write("{not json\n")
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("not posts")
    spk = build_pairs([folder.as_uri()], (tmp_path / "spark out").as_uri(), engine="spark")
    assert len(duck.pairs) > 20
    assert set(spk.paths) == {"pairs", "stats", "stats_md", "rejects"}
    out = tmp_path / "spark out"
    assert sorted(p.name for p in out.iterdir()) == ["pairs.parquet", "rejects.csv", "stats.json", "stats.md"]
    got = pd.read_parquet(out / "pairs.parquet")
    pd.testing.assert_frame_equal(got, duck.pairs, check_exact=False, rtol=1e-12, check_dtype=False)
    assert spk.stats["funnel"] == duck.stats["funnel"]
    rej = pd.read_csv(out / "rejects.csv")
    bad = rej[rej["reason"] == "unparsable row"]
    assert sorted(bad["source_file"]) == [str(folder / "p2.jsonl"), str(folder / "sub" / "p1.csv")]
    assert bad["raw_row"].str.contains("unterminated").any() and bad["raw_row"].str.contains("not json").any()
    assert spk.stats["posts"]["rows"] == len(posts) + 2


def test_missing_posts_and_a_busy_output_uri_are_refused(spark, tmp_path):
    from iipa.errors import IIPAError
    from iipa.pairs.spark_finish import check_remote_out

    with pytest.raises(IIPAError, match="no such posts file"):
        build_pairs([(tmp_path / "nothing.parquet").as_uri()], None, engine="spark")
    with pytest.raises(IIPAError, match="no posts files match"):
        build_pairs([f"{tmp_path.as_uri()}/*.csv"], None, engine="spark")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "old.txt").write_text("x")
    random_crawl(n=30).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(IIPAError, match="not empty"):
        build_pairs([tmp_path / "p.parquet"], f"file://{tmp_path}/busy", engine="spark")
    with pytest.raises(IIPAError, match="not empty"):  # the check for hdfs:// and other URIs
        check_remote_out(spark, f"file://{tmp_path}/busy", overwrite=False)
    check_remote_out(spark, f"file://{tmp_path}/new", overwrite=False)
    assert (tmp_path / "new").is_dir()
