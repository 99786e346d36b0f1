"""Pairwise accuracy, its Wilson interval, ties, multi-crop and the `iipa evaluate` command."""

from __future__ import annotations

import json

import pytest

from _pairsynth import make_pair_set
from iipa.evaluate import pairwise_accuracy, wilson_interval
from iipa.profiles import get_profile


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_pair_set(tmp_path_factory.mktemp("evalset"), n_train=4, n_val=4, n_test=12, size=76)


def test_wilson_interval_matches_textbook_values():
    low, high = wilson_interval(8, 10)  # Newcombe (1998): 0.4902 - 0.9433
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)  # (1 + z^2/n)^-1
    assert all(v != v for v in wilson_interval(0, 0))  # NaN when there is nothing to estimate


def test_ties_count_half_and_are_reported():
    r = pairwise_accuracy([3.0, 2.0, 1.0, 5.0, float("nan")], [1.0, 2.0, 4.0, 5.0, 0.0])
    assert (r["n"], r["correct"], r["wrong"], r["ties"], r["skipped"]) == (4, 1, 1, 2, 1)
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["ci95"][0] < 0.5 < r["ci95"][1] and r["ci_method"] == "wilson"


def test_five_crops_are_distinct_and_of_crop_size():
    prof = get_profile("small")
    boxes = prof.crop_boxes(96, 72, 5)
    assert len(set(boxes)) == 5
    assert all(r - left == 64 and b - t == 64 for left, t, r, b in boxes)
    assert prof.crop_boxes(96, 72, 1) == [(16, 4, 80, 68)]


def test_evaluate_command_reports_each_split_with_ci(small_set, tiny_checkpoint, run_cli, tmp_path):
    pairs, images = small_set
    hidden = tmp_path / "p00000.png"
    (images / "p00000.png").rename(hidden)  # one training pair loses its image (given back below)
    try:
        code, out, err = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", pairs, "--images", images,
                                 "--crops", "10", "--precision", "fp32")
    finally:
        hidden.rename(images / "p00000.png")
    assert code == 1, err  # a result on part of the pairs is no success: exit 1 and one line that says so
    assert f"iipa evaluate: 1 of 20 pairs lack an image in {images} (e.g. p00000)" in err, err
    result = json.loads(out)
    assert result["missing_images_pairs"] == 1 and result["crops"] == 10
    assert result["missing_images_examples"] == ["p00000"] and result["pairs_requested"] == 20
    assert {k: v["n"] for k, v in result["splits"].items()} == {"train": 3, "val": 4, "test": 12}
    test = result["splits"]["test"]
    assert test["ci95"][0] <= test["accuracy"] <= test["ci95"][1]
    assert test["correct"] + test["wrong"] + test["ties"] == 12
    code, _, _ = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", pairs, "--images", images,
                         "--split", "test", "-o", tmp_path / "e.json")
    assert code == 0 and list(json.loads((tmp_path / "e.json").read_text())["splits"]) == ["test"]


def test_evaluate_on_a_folder_without_the_images_is_an_error(small_set, tiny_checkpoint, run_cli, tmp_path):
    pairs, images = small_set
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "other.png").write_bytes((images / "p00001.png").read_bytes())
    code, out, err = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", pairs, "--images", wrong)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("iipa evaluate: error: none of the 20 pairs could be used: "
                                                   f"all lack an image in {wrong} (e.g. "), err
    code, out, err = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", pairs, "--images", images,
                             "--split", "val")
    assert code == 0 and "lack" not in err and json.loads(out)["splits"]["val"]["n"] == 4, err


def test_multi_crop_changes_scores_but_not_pair_count(small_set, tiny_checkpoint):
    from iipa.evaluate import score_paths

    pairs, images = small_set
    paths = sorted(str(p) for p in images.glob("*.png"))[:6]
    one = score_paths(str(tiny_checkpoint), paths, crops=1, precision="fp32")
    five = score_paths(str(tiny_checkpoint), paths, crops=5, precision="fp32")
    assert one.shape == five.shape == (6,)
    assert not (one == five).all()


def test_evaluate_names_a_missing_images_folder(small_set, tiny_checkpoint, run_cli, tmp_path):
    code, _, err = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", small_set[0], "--images", tmp_path / "nope")
    assert code == 2 and "no such images folder" in err


def test_evaluate_reports_calibration_summary_and_reliability_diagrams(small_set, tiny_checkpoint, run_cli, tmp_path):
    import numpy as np

    from iipa.calibration import calibration_metrics
    from iipa.evaluate import score_paths
    from iipa.pairs.table import attach_images, read_pairs

    pairs, images = small_set
    code, out, err = run_cli("evaluate", "--model", tiny_checkpoint, "--pairs", pairs, "--images", images,
                             "--precision", "fp32", "--out", tmp_path / "eval")
    assert code == 0, err
    result = json.loads(out)
    lines = [line for line in err.splitlines() if line.split(":")[0] in ("test", "val", "train")]
    assert [line.split(":")[0] for line in lines] == ["test", "val", "train"]  # test first
    assert "ECE" in lines[0] and "pairs the model may have been trained on" in lines[2]
    test = result["splits"]["test"]
    df, _ = attach_images(read_pairs(pairs), images)
    df = df[df["split"] == "test"]
    paths = sorted(set(df["high_path"]) | set(df["low_path"]))
    s = dict(zip(paths, score_paths(tiny_checkpoint, paths, precision="fp32")))
    expected = calibration_metrics(np.array([s[h] - s[lo] for h, lo in zip(df["high_path"], df["low_path"])]))
    for key in ("ece", "log_loss", "brier", "mean_confidence"):
        assert test["calibration"][key] == pytest.approx(expected[key], abs=1e-6)
    svg = (tmp_path / "eval" / "reliability-test.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "share of picks that were right" in svg  # both axes labelled
    assert test["calibration"]["diagram"].endswith("reliability-test.svg")
