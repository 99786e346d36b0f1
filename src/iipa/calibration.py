"""Calibration of the pairwise probability P(A beats B) = logistic(f(A) - f(B)).

A linear head fitted with an L2 penalty shrinks its scores: the *order* of two photos is
right as often as the model can be, but the logistic of the difference is too close to 0.5
(the shipped probe printed 0.58 on average for picks that were right 69 % of the time).
Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017)
fixes this with one number fitted on pairs the head never saw: ``P = logistic(T · Δ)``.
``T`` is then folded into the model (head weight and bias, and the reference mean and std,
see :func:`temperature_changes`), so every entry point keeps computing
``logistic(f(A) - f(B))`` and prints a calibrated probability, while the 0-100 scale and the
levels, defined against the reference, do not move.

Metrics here follow the usual definitions on the *picked* side, i.e. the probability the
model gives to the photo it ranks higher (always >= 0.5): expected calibration error over
10 bins of width 0.05 on [0.5, 1], log-loss and Brier score of the probability given to the
truly more popular photo. Pure numpy: no torch, no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["calibration_metrics", "fit_temperature", "logistic", "temperature_changes"]

ECE_BINS = 10
T_BOUNDS = (1e-3, 1e3)


def logistic(x: np.ndarray | float) -> np.ndarray:
    """Numerically stable 1 / (1 + exp(-x))."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def _nll(t: float, diffs: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> float:
    z = t * diffs  # -[y log σ(z) + (1 - y) log σ(-z)] = y·softplus(-z) + (1 - y)·softplus(z)
    loss = targets * np.logaddexp(0.0, -z) + (1.0 - targets) * np.logaddexp(0.0, z)
    return float((weights * loss).sum() / weights.sum())


def fit_temperature(diffs: Sequence[float], targets: Sequence[float] | None = None,
                    weights: Sequence[float] | None = None) -> float:
    """The T > 0 minimising the log-loss of ``logistic(T * diffs)`` against ``targets``.

    ``diffs`` are held-out score differences f(high) - f(low) (``targets`` 1, the default) or
    f(A) - f(B) with targets in [0, 1]. The loss is convex in T, so a golden-section search on
    log T is exact enough (|ΔT| < 1e-6 relative). Raises when the pairs cannot determine T:
    every difference zero, or every pair on one side (then any larger T is better)."""
    d = np.asarray(diffs, dtype=np.float64)
    y = np.ones_like(d) if targets is None else np.asarray(targets, dtype=np.float64)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(d) & np.isfinite(y) & (w > 0)
    d, y, w = d[keep], y[keep], w[keep]
    signed = d * (2 * y - 1)
    if d.size == 0 or not np.any(d != 0):
        raise ValueError("cannot fit a temperature: no pair with a non-zero score difference")
    if np.all(signed >= 0) and np.all((y == 0) | (y == 1)):
        raise ValueError("cannot fit a temperature: every held-out pair is ranked right, so the "
                         "log-loss keeps falling as T grows (more held-out pairs are needed)")
    lo, hi = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(math.exp(a), d, y, w), _nll(math.exp(b), d, y, w)
    for _ in range(200):
        if hi - lo < 1e-7:
            break
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(math.exp(a), d, y, w)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(math.exp(b), d, y, w)
    return math.exp((lo + hi) / 2)


def calibration_metrics(diffs: Sequence[float], *, temperature: float = 1.0,
                        bins: int = ECE_BINS) -> dict[str, Any]:
    """Accuracy and calibration of P(high beats low) = logistic(T · (f(high) - f(low))).

    Returns accuracy (ties half), mean confidence of the picked side, ECE (``bins`` equal bins
    on [0.5, 1] of the picked side's confidence, weighted by count), log-loss and Brier score
    of the probability given to the more popular photo, and the per-bin table of the
    reliability diagram. NaN differences (unscored images) are skipped and counted."""
    d = np.asarray(diffs, dtype=np.float64)
    ok = np.isfinite(d)
    d = d[ok] * float(temperature)
    n = int(d.size)
    if n == 0:
        raise ValueError("no scored pair to measure calibration on")
    p_high = logistic(d)
    conf = np.maximum(p_high, 1.0 - p_high)
    correct = np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for k in range(bins):
        m = which == k
        count = int(m.sum())
        row = {"low": float(edges[k]), "high": float(edges[k + 1]), "n": count,
               "confidence": float(conf[m].mean()) if count else None,
               "accuracy": float(correct[m].mean()) if count else None}
        if count:
            ece += count / n * abs(row["accuracy"] - row["confidence"])
        table.append(row)
    eps = 1e-12
    return {"n": n, "skipped": int((~ok).sum()), "temperature": float(temperature),
            "accuracy": float(correct.mean()), "mean_confidence": float(conf.mean()),
            "ece": float(ece), "log_loss": float(-np.mean(np.log(np.clip(p_high, eps, 1.0)))),
            "brier": float(np.mean((1.0 - p_high) ** 2)), "bins": table}


def temperature_changes(temperature: float, reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reference distribution after scores are multiplied by ``temperature``: mean and std
    scale with the scores, so ``(score - mean) / std`` (the 0-100 scale, the levels) is unchanged."""
    if reference is None:
        return None
    out = dict(reference)
    for key in ("mean", "std"):
        if key in out and out[key] is not None:
            out[key] = float(out[key]) * float(temperature)
    for key in ("quantiles", "edges", "level_edges"):
        if isinstance(out.get(key), list):
            out[key] = [float(v) * float(temperature) for v in out[key]]
    return out
