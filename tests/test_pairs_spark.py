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
    session = get_spark("local[2]")
    yield session
    session.stop()


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
