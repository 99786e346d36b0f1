"""The Spark engine builds the identical pair set as DuckDB (pyspark local[2])."""

from __future__ import annotations

import pandas as pd
import pytest

from _spark import require_spark
from iipa.pairs import build_pairs
from pairs_helpers import random_crawl

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark():
    get_spark = require_spark("iipa.pairs.spark").get_spark
    session = get_spark("local[2]", {"spark.sql.shuffle.partitions": "5"})
    yield session
    session.stop()


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
