"""The default recipe's calibration (temperature folded into the model) and quality pairs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def crawl(sim_crawl):
    return sim_crawl


@pytest.fixture(scope="module")
def trained(sim_trained_run):
    """conftest's `iipa train --posts ... --quality-pairs 0.5 --quality-images 1` run (once per session)."""
    assert sim_trained_run.code == 0, sim_trained_run.stderr
    return sim_trained_run.out


def test_temperature_is_fitted_on_held_out_pairs_and_recorded(trained):
    summary = json.loads((trained / "summary.json").read_text())
    cal = summary["calibration"]
    assert cal["T"] > 0 and cal["n"] > 10 and "P >= 0.95" in cal["fitted_on"]
    assert cal["log_loss_after"] <= cal["log_loss_before"] + 1e-9  # T minimises it on those pairs
    ckpt = torch.load(trained / "best.pt", weights_only=True, map_location="cpu")
    assert ckpt["info"]["calibration"]["T"] == pytest.approx(cal["T"])


def test_quality_pairs_are_written_counted_and_learned(trained):
    summary = json.loads((trained / "summary.json").read_text())
    n = summary["data"]["quality_pairs"]
    copies = [c for c in (trained / "quality").glob("*.png") if not c.name.startswith("flat-")]
    frames = list((trained / "quality").glob("flat-*.png"))
    assert len(copies) > 0 and len(copies) % 4 == 0 and len(frames) == 6
    assert n == len(copies) + len(frames) * len(copies) // 4  # each original: 4 copies, 6 frames


def test_compare_probability_is_the_logistic_of_the_score_difference(trained, crawl, run_cli):
    _, images = crawl
    a, b = sorted(images.glob("*.jpg"))[:2]
    model = trained / "best.pt"
    code, out, err = run_cli("score", a, b, "--model", model, "-f", "json")
    assert code == 0, err
    scores = {row["path"]: row["score"] for row in json.loads(out)}
    code, out, err = run_cli("compare", a, b, "--model", model, "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0] if out.lstrip().startswith("[") else json.loads(out)
    expected = 1 / (1 + math.exp(-(scores[str(a)] - scores[str(b)])))
    assert row["probability_a"] == pytest.approx(expected, abs=1e-4)


def test_no_calibrate_leaves_the_model_as_fitted(trained, sim_trained_run, tmp_path):
    """The same run as ``trained`` (a seeded, deterministic training) with --no-calibrate."""
    from iipa.cli import main

    a, b = trained, tmp_path / "b"
    assert main([*sim_trained_run.argv, "--out", str(b), "--no-calibrate"]) == 0
    cal = json.loads((a / "summary.json").read_text())["calibration"]
    assert json.loads((b / "summary.json").read_text())["calibration"] is None
    wa = torch.load(a / "best.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "best.pt", weights_only=True)["state_dict"]
    head = [k for k in wa if k.endswith("weight")][-1]
    np.testing.assert_allclose(wa[head].numpy(), wb[head].numpy() * cal["T"], rtol=1e-5, atol=1e-7)
