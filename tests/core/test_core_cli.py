"""The core install's main job with the default model, offline: score, rank with its album
report, compare, evaluate on a CSV pairs table, model-info. CI runs these in a virtual
environment without PyTorch (and asserts there that ``import torch`` fails); here they also
run in the full one. Each command runs in a fresh interpreter, as a user would run it."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _photo import synthetic_photo


def iipa(*argv: object) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "iipa", "--offline", *map(str, argv)], capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four id-named photos in the formats phones and the web use."""
    import pillow_heif

    d = tmp_path_factory.mktemp("core-photos")
    synthetic_photo(10).save(d / "p1.jpg", quality=92)
    synthetic_photo(11).save(d / "p2.png")
    pillow_heif.from_pillow(synthetic_photo(12)).save(d / "p3.heic", quality=92)
    synthetic_photo(13).save(d / "p4.avif", quality=90)
    return d


def _scores(out: str) -> dict[str, float]:
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(r["error"] is None for r in rows), rows
    return {Path(r["path"]).name: r["score"] for r in rows}


def test_score_reads_every_format(photos):
    code, out, err = iipa("score", photos, "--device", "cpu", "--format", "jsonl")
    assert code == 0, err
    scores = _scores(out)
    assert sorted(scores) == ["p1.jpg", "p2.png", "p3.heic", "p4.avif"]
    assert all(math.isfinite(s) for s in scores.values()) and len(set(scores.values())) == 4


def test_rank_writes_the_album_with_an_svg_histogram(photos, tmp_path):
    code, out, err = iipa("rank", photos, "--device", "cpu", "--report", tmp_path / "album.html", "-f", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    page = (tmp_path / "album.html").read_text()
    assert page.count("<svg ") == 1 and page.count("data:image/jpeg;base64,") == 4
    assert ET.parse(tmp_path / "album.histogram.svg").getroot().tag.endswith("svg")


def test_compare_says_which_photo_wins(photos):
    code, out, err = iipa("compare", photos / "p1.jpg", photos / "p3.heic", "--device", "cpu")
    assert code == 0, err
    assert "P = " in err + out


def test_evaluate_on_a_csv_pairs_table(photos, tmp_path):
    code, out, err = iipa("score", photos, "--device", "cpu", "--format", "jsonl")
    ranked = sorted(_scores(out).items(), key=lambda kv: -kv[1])
    ids = [Path(name).stem for name, _ in ranked]  # best first: every listed pair is ordered right
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("high_id,low_id,split\n"
                     f"{ids[0]},{ids[1]},test\n{ids[1]},{ids[2]},test\n{ids[3]},{ids[0]},val\n{ids[0]},gone,test\n")
    code, out, err = iipa("evaluate", "--pairs", pairs, "--images", photos, "--device", "cpu")
    assert code == 1 and "1 of 4 pairs lack an image" in err and "(e.g. gone)" in err, err  # part of the pairs: exit 1
    result = json.loads(out)
    assert result["splits"]["test"]["accuracy"] == 1.0 and result["splits"]["test"]["n"] == 2
    assert result["splits"]["val"]["accuracy"] == 0.0 and result["missing_images_pairs"] == 1


def test_evaluate_names_a_bad_row(photos, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("high_id,low_id,p\np1,p2,0.9\np2,p3,high\n")
    code, _, err = iipa("evaluate", "--pairs", pairs, "--images", photos)
    assert code == 2 and f"{pairs}: row 3: p 'high' is not a number" in err, err


def test_model_info_of_the_default_model():
    code, out, err = iipa("model-info", "--format", "json")
    assert code == 0, err
    card = json.loads(out)
    assert "lite0" in json.dumps(card).lower()


def test_the_installed_package_is_what_runs():
    """Under .ci/run's core install the tests must exercise the wheel, not this checkout."""
    import iipa

    checkout = Path(__file__).resolve().parents[2] / "src"
    installed = Path(iipa.__file__).resolve()
    assert installed.is_relative_to(checkout) != bool(os.environ.get("IIPA_TEST_INSTALLED")), installed
