"""Every time type a posts file may carry, read by the DuckDB engine (the Spark engine's
twin of this test is in test_pairs_spark.py, sharing its session)."""

from __future__ import annotations

import pytest

from iipa.pairs import build_pairs
from pairs_helpers import TIME_TYPES, time_typed_posts


@pytest.mark.parametrize("kind", TIME_TYPES)
def test_duckdb_reads_every_time_type(kind, tmp_path):
    path, expected, n_bad = time_typed_posts(kind, tmp_path)
    res = build_pairs([path], None)
    assert len(expected) > 10
    assert set(zip(res.pairs["high_id"], res.pairs["low_id"], strict=True)) == expected
    assert res.stats["posts"]["rejected"] == ({"unparsable taken_at": n_bad} if n_bad else {})
