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
