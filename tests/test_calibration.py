"""Temperature scaling and calibration metrics (iipa.calibration): pure numpy, no torch."""

from __future__ import annotations

import numpy as np
import pytest

from iipa.calibration import (
    calibration_metrics,
    fit_temperature,
    logistic,
    temperature_changes,
)
from iipa.levels import level, scaled_score


def _synthetic(t_true: float, n: int = 20000, seed: int = 0) -> np.ndarray:
    """Score differences whose true P(high wins) is logistic(t_true * d), oriented so that
    the 'high' image is the one that actually won."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 1.0, n)
    won = rng.random(n) < logistic(t_true * d)
    return np.where(won, d, -d)


@pytest.mark.parametrize("t_true", [0.5, 1.0, 3.5])
def test_fit_recovers_the_temperature_that_generated_the_outcomes(t_true):
    t = fit_temperature(_synthetic(t_true))
    assert t == pytest.approx(t_true, rel=0.06)


def test_calibrated_probabilities_are_calibrated_and_shrunk_ones_are_not():
    d = _synthetic(3.5, seed=1)
    raw = calibration_metrics(d)
    cal = calibration_metrics(d, temperature=fit_temperature(d))
    assert raw["accuracy"] == cal["accuracy"]  # temperature never changes the order
    assert raw["ece"] > 0.1 > 0.02 > cal["ece"]
    assert abs(cal["mean_confidence"] - cal["accuracy"]) < 0.02
    assert cal["log_loss"] < raw["log_loss"] and cal["brier"] < raw["brier"]
    assert sum(b["n"] for b in cal["bins"]) == cal["n"] == len(d)


def test_soft_targets_and_both_orientations_give_the_same_temperature():
    d = _synthetic(2.0, n=5000, seed=2)
    both = np.concatenate([d, -d])
    targets = np.concatenate([np.ones_like(d), np.zeros_like(d)])
    assert fit_temperature(both, targets) == pytest.approx(fit_temperature(d), rel=1e-4)


def test_unidentifiable_temperature_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="every held-out pair is ranked right"):
        fit_temperature([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="non-zero"):
        fit_temperature([0.0, 0.0])


def test_metrics_skip_unscored_pairs_and_count_ties_half():
    m = calibration_metrics([1.0, -1.0, 0.0, float("nan")])
    assert m["n"] == 3 and m["skipped"] == 1
    assert m["accuracy"] == pytest.approx(0.5)


def test_folding_the_temperature_keeps_levels_and_the_0_100_scale():
    ref = {"mean": 0.034, "std": 0.274, "n": 10}
    t = 3.7
    new = temperature_changes(t, ref)
    assert new["n"] == 10 and new["mean"] == pytest.approx(0.034 * t)
    for s in (-0.5, 0.0, 0.2, 0.9):
        assert scaled_score(s * t, new) == pytest.approx(scaled_score(s, ref))
        assert level(s * t, new) == level(s, ref)


def test_reliability_diagram_is_an_svg_with_both_axes_labelled(tmp_path):
    import xml.etree.ElementTree as ET

    from iipa.plots import reliability_svg, write_svg

    metrics = calibration_metrics(_synthetic(1.0, n=500))
    path = write_svg(reliability_svg(metrics), tmp_path / "rel.svg")
    texts = [t.text for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "confidence of the picked photo (model P)" in texts and "accuracy: share of picks that were right" in texts
    assert all(str(b["n"]) in texts for b in metrics["bins"] if b["n"])  # each bin's count is written
