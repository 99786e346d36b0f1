"""Pairwise accuracy of a popularity model on any pairs table, with 95% confidence intervals.

A pair is *correct* when the model scores the more popular image (``high_id``) strictly
higher, *wrong* when strictly lower and a *tie* when the two scores are equal (possible
for identical images or a saturated model; the score head runs in fp32 so bf16 rounding
does not create ties). Ties count as half correct — the expected accuracy of breaking
them by a coin flip — and are reported separately.

The interval is Wilson's score interval for a binomial proportion (n = pairs, successes =
correct + ties/2): unlike the normal approximation it stays inside [0, 1] and keeps close
to its nominal coverage for small n and accuracies near 0 or 1. Pairs share images only
when the table reuses images (the paper's builder does not), so pairs are treated as
independent.

Images are scored by a :class:`~iipa.scoring.Scorer` (:func:`~iipa.scoring.make_scorer`), the
one inference path, so evaluating the default model imports no torch; multi-crop
averaging (``crops=5``: four corners + centre of the profile's crop; ``10``: the same plus
horizontal flips, :meth:`Profile.crop_boxes`) averages each image's scores over the crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from iipa.errors import IIPAError
from iipa.pairs.table import SPLITS, image_finder, read_pair_columns
from iipa.profiles import CROPS
from iipa.scoring import make_scorer

MISSING_EXAMPLES = 20  # ids of missing images listed in the result (the count covers them all)

__all__ = ["CROPS", "evaluate_pairs", "pairwise_accuracy", "score_paths", "wilson_interval"]


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pairwise_accuracy(high_scores: Sequence[float], low_scores: Sequence[float]) -> dict[str, Any]:
    """Accuracy, counts and Wilson 95% CI of "the high image scores higher"; NaN pairs are skipped."""
    hi = np.asarray(high_scores, dtype=np.float64)
    lo = np.asarray(low_scores, dtype=np.float64)
    ok = ~(np.isnan(hi) | np.isnan(lo))
    hi, lo = hi[ok], lo[ok]
    n = int(hi.size)
    correct, ties = int((hi > lo).sum()), int((hi == lo).sum())
    acc = (correct + 0.5 * ties) / n if n else float("nan")
    low, high = wilson_interval(correct + 0.5 * ties, n)
    return {"n": n, "correct": correct, "wrong": n - correct - ties, "ties": ties,
            "accuracy": acc, "ci95": [low, high], "ci_method": "wilson", "skipped": int((~ok).sum())}


def score_paths(model: Any, paths: Sequence[str], **scorer_kwargs: Any) -> np.ndarray:
    """One score per path (NaN for unreadable images) from ``model``: a Scorer, or anything
    :func:`~iipa.scoring.make_scorer` takes, with ``scorer_kwargs`` (``crops``, ``device``,
    ``precision``, ``runtime``, ``batch_size``, ``num_workers``, ``max_pixels``)."""
    scorer = make_scorer(model, **scorer_kwargs)
    return np.array(scorer.score(list(paths), on_error="nan"), dtype=np.float64)


def evaluate_pairs(
    model: Any,
    pairs: str | os.PathLike | Any,
    images: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    **score_kwargs: Any,
) -> dict[str, Any]:
    """Pairwise accuracy per split (and over all of them) of ``model`` (a Scorer, or a model
    spec scored by ``make_scorer(model, **score_kwargs)``) on a pairs table (a CSV or Parquet
    path, or a DataFrame with the pairs columns).

    ``max_pairs`` evaluates a seeded random subset of each split (for quick validation).
    Pairs whose images are missing from ``images`` are dropped and counted
    (``missing_images_pairs`` of ``pairs_requested``; the first missing ids in
    ``missing_images_examples``).
    """
    cols = read_pair_columns(pairs) if isinstance(pairs, (str, os.PathLike)) else \
        {c: pairs[c].tolist() for c in pairs.columns}
    if not os.path.isdir(images):
        raise IIPAError(f"{images}: no such images folder")
    split_of = cols.get("split") or ["test"] * len(cols["high_id"])
    wanted = list(splits) if splits else [s for s in SPLITS if s in set(split_of)]
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for split in wanted:
        members = [i for i, s in enumerate(split_of) if s == split]
        if max_pairs is not None and len(members) > max_pairs:
            members = sorted(rng.choice(members, size=max_pairs, replace=False).tolist())
        rows += members
    find = image_finder(images)
    found = [(i, find(str(cols["high_id"][i])), find(str(cols["low_id"][i]))) for i in rows]
    kept = [(i, hi, lo) for i, hi, lo in found if hi is not None and lo is not None]
    absent = [str(cols[side][i]) for i, hi, lo in found for side, p in (("high_id", hi), ("low_id", lo)) if p is None]
    paths = sorted({p for _, hi, lo in kept for p in (hi, lo)})
    scorer = make_scorer(model, **score_kwargs)
    scores = dict(zip(paths, score_paths(scorer, paths), strict=True))
    hi = np.array([scores[h] for _, h, _ in kept], dtype=np.float64)
    lo = np.array([scores[lo_] for _, _, lo_ in kept], dtype=np.float64)
    kept_split = np.array([split_of[i] for i, _, _ in kept], dtype=object)
    result: dict[str, Any] = {"splits": {}, "pairs_requested": len(found), "missing_images_pairs": len(found) - len(kept),
                              "missing_images_examples": list(dict.fromkeys(absent))[:MISSING_EXAMPLES],
                              "images_scored": len(paths),
                              "unreadable_images": int(sum(math.isnan(v) for v in scores.values())),
                              "crops": scorer.crops}
    for split in wanted:
        mask = kept_split == split
        result["splits"][split] = pairwise_accuracy(hi[mask], lo[mask])
        result["splits"][split]["calibration"] = _calibration(hi[mask] - lo[mask])
    result["all"] = pairwise_accuracy(hi, lo)
    return result


def _calibration(diffs: np.ndarray) -> dict[str, Any] | None:
    """Calibration of the printed probability logistic(f(high) - f(low)) on these pairs
    (:func:`iipa.calibration.calibration_metrics`); None when no pair was scored."""
    from iipa.calibration import calibration_metrics

    return calibration_metrics(diffs) if np.isfinite(diffs).any() else None


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One plain line per split, test first: what a person reads before the JSON."""
    order = [s for s in ("test", "val", "train") if s in result["splits"]]
    order += [s for s in result["splits"] if s not in order]
    lines = []
    for split in order:
        r = result["splits"][split]
        if not r["n"]:
            lines.append(f"{split}: no scored pair")
            continue
        line = (f"{split}: accuracy {r['accuracy']:.3f} [95% CI {r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
                f"on {r['n']:,} pairs")
        cal = r.get("calibration")
        if cal:
            line += (f"; mean confidence {cal['mean_confidence']:.3f}, ECE {cal['ece']:.3f}, "
                     f"log-loss {cal['log_loss']:.3f}, Brier {cal['brier']:.3f}")
        if split == "train":
            line += " (pairs the model may have been trained on)"
        lines.append(line)
    return lines
