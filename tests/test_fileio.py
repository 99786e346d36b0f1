"""The one atomic-write helper and the one JSON sanitiser."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iipa.fileio import atomic_open, atomic_path, plain, write_json, write_text


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "out.txt"
    write_text(dest, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(dest) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert dest.read_text() == "old"
    assert [p.name for p in dest.parent.iterdir()] == ["out.txt"], "the temp file must be removed"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".out.txt.") and tmp.suffix == ".tmp"
        tmp.write_text("new")
        assert dest.read_text() == "old", "the destination changes only when the block ends"
    assert dest.read_text() == "new"


def test_an_interrupted_write_keeps_the_previous_file(tmp_path: Path) -> None:
    dest = tmp_path / "rows.csv"
    write_text(dest, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(dest) as fh:
            fh.write("a,b\n")
            raise KeyboardInterrupt
    assert dest.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_temp_names_are_unique(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x") as a, atomic_path(tmp_path / "x") as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")


def test_plain_makes_json_types() -> None:
    value = {1: (np.int64(3), np.float32(0.5), float("nan"), torch.tensor(2.0)),
             "p": Path("/x/y"), "inf": -math.inf, "ok": [True, None, "s"], "obj": object}
    out = plain(value)
    assert out == {"1": [3, 0.5, None, 2.0], "p": "/x/y", "inf": None, "ok": [True, None, "s"],
                   "obj": str(object)}
    assert type(out["1"][0]) is int and type(out["1"][1]) is float
    json.dumps(out, allow_nan=False)  # strict JSON


def test_write_json_is_strict_json(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", {"acc": np.float64(0.75), "loss": float("nan")})
    assert json.loads(path.read_text()) == {"acc": 0.75, "loss": None}
    assert path.read_text().endswith("\n")
