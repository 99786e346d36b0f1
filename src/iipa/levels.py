"""What a score means: a 0-100 scaled score and five popularity levels (paper §4.3, Figs. 1, 5, 6).

Scores are only meaningful against a reference distribution of the same model's scores
(stored with the weights; for the authors' model the paper's test-set histogram is a
Gaussian with mean 2.96 and std 1.55). Given its mean ``mu`` and std ``sigma``:

* **scaled score** = ``100 * Phi((score - mu) / sigma)``: the percentile of the score in
  the reference Gaussian, so 50 is a typical image, 84 is one std above; always in [0, 100],
  monotone in the score, and stable as long as the reference is.
* **levels** divide ``mu ± 2.5 sigma`` into five equal-width bands (the outer two open-ended):
  poor < mu-1.5σ ≤ bad < mu-0.5σ ≤ fair < mu+0.5σ ≤ good < mu+1.5σ ≤ excellent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

LEVELS = ("poor", "bad", "fair", "good", "excellent")
_EDGES = (-1.5, -0.5, 0.5, 1.5)
# Paper §4.3 / Fig. 5: the authors' model's scores on the 50k test PDIPs are Gaussian.
# (Here, not in checkpoint.py, so that the weights registry can be read without torch.)
AUTHORS_REFERENCE = {"mean": 2.96, "std": 1.55, "source": "paper Fig. 5: Gaussian fit of test-set scores"}


def reference_distribution(scores: Iterable[float | None], *, source: str | None = None) -> dict[str, Any] | None:
    """The Gaussian of a model's finite scores (paper Fig. 5) that levels and scaled scores use:
    ``{"mean", "std", "n"}`` (plus ``source`` when given); None for fewer than 2 finite scores.

    The std is the sample std (ddof=1): a reference is usually fitted on a few hundred
    validation images and stands for the whole population of images the model will see, so
    the unbiased estimate is the right one (for n in the thousands the two differ by < 0.1%).
    Every reference iipa computes (training, album reports) comes from this function.
    """
    finite = [float(s) for s in scores if s is not None and math.isfinite(s)]
    n = len(finite)
    if n < 2:
        return None
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in finite) / (n - 1))
    out: dict[str, Any] = {"mean": mean, "std": std, "n": n}
    if source is not None:
        out["source"] = source
    return out


def _mu_sigma(reference: Mapping[str, Any]) -> tuple[float, float]:
    mu, sigma = float(reference["mean"]), float(reference["std"])
    if not sigma > 0:
        raise ValueError(f"reference std must be positive, got {sigma}")
    return mu, sigma


def scaled_score(score: float, reference: Mapping[str, Any]) -> float:
    """0-100: the percentile of ``score`` under the reference Gaussian."""
    mu, sigma = _mu_sigma(reference)
    return 50.0 * (1.0 + math.erf((score - mu) / (sigma * math.sqrt(2.0))))


def level_edges(reference: Mapping[str, Any]) -> list[float]:
    """The four score boundaries between poor|bad|fair|good|excellent."""
    mu, sigma = _mu_sigma(reference)
    return [mu + e * sigma for e in _EDGES]


def level(score: float, reference: Mapping[str, Any]) -> str:
    edges = level_edges(reference)
    return LEVELS[sum(score >= e for e in edges)]


def describe(score: float | None, reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"score", "scaled", "level"}``; scaled and level are None without a reference."""
    if score is None or reference is None or math.isnan(score):
        return {"score": score, "scaled": None, "level": None}
    return {"score": score, "scaled": scaled_score(score, reference), "level": level(score, reference)}
