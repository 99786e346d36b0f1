"""The engine-neutral pairs module: engines share it and never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from iipa.errors import IIPAError
from iipa.pairs import build, tags

PAIRS_DIR = Path(build.__file__).parent


def _imports(module: str) -> set[str]:
    tree = ast.parse((PAIRS_DIR / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_engines_do_not_import_each_other():
    assert not {"iipa.pairs.spark", "iipa.pairs.build"} & _imports("build") - {"iipa.pairs.build"}
    assert "iipa.pairs.build" not in _imports("spark") and "iipa.pairs.engine" in _imports("spark")
    assert set(build.ENGINES) == {"duckdb", "spark"}


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(IIPAError, match="duckdb, spark"):
        build.build_pairs([], engine="flink")


def test_tag_regexes_come_from_the_one_definition():
    assert tags.TAG_CHARS == r"[\p{L}\p{M}\p{N}_]"
    assert tags.HASHTAG_RE == r"#([\p{L}\p{M}\p{N}_]+)"
    assert tags.WORD_TOKEN_RE == r"[^\t\n\f\r \p{Z}]*[\p{L}\p{N}][^\t\n\f\r \p{Z}]*"
    assert tags.descriptive_words("a\u3000b #c @d.e 😀 !") == 2


def test_outputs_and_posts_named_by_uri():
    from iipa.pairs.uris import is_uri, local_path

    assert local_path("file:///tmp/crawl%20dir/x.parquet") == Path("/tmp/crawl dir/x.parquet")
    assert local_path("file:/tmp/x") == Path("/tmp/x") and local_path("pdip/") == Path("pdip")
    assert local_path("hdfs://nn/pdip") is None and local_path("s3a://bucket/pdip") is None
    assert not is_uri(r"C:\crawl") and not is_uri(Path("/tmp/x")) and is_uri("gs://b/x")


def test_duckdb_refuses_an_output_uri(tmp_path):
    with pytest.raises(IIPAError, match="--engine spark writes to hdfs://"):
        build.build_pairs([tmp_path / "posts.parquet"], "hdfs://nn/pdip/")
    assert not (tmp_path / "hdfs:").exists()
