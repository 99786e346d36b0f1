"""Linear-probe warm start: the score head fitted on frozen features before any fine-tuning.

On small data (hundreds to a few thousand pairs) a logistic regression on differences of
frozen ImageNet features beats fine-tuning from a randomly initialised head on unseen users
(cross-validated on real photos: docs/models.md). So the small-data recipe first fits
the head exactly (L2-regularised, soft labels, full-batch L-BFGS), then fine-tunes from there.

Because the model is f(x) = w . phi(x) + b, the pair logit is w . (phi(A) - phi(B)): the bias
cancels and the fit needs no intercept. Features are standardised for the fit and the
standardisation is folded back into w, so the head works on raw features.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_pairwise_logistic(features: np.ndarray, high: np.ndarray, low: np.ndarray, target: np.ndarray,
                          *, l2: float = 1e-2, max_iter: int = 300,
                          weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weights w (in raw feature units) minimising soft-label BCE of w . (phi_high - phi_low) + l2 |w'|^2,
    where w' are the weights on standardised features; ``weights`` weigh the pairs' BCE terms
    (normalised to mean 1, so the L2 keeps its meaning). Returns (w, final loss)."""
    feats = torch.as_tensor(np.array(features, dtype=np.float64))
    scale = feats.std(0).clamp_min(1e-6)
    z = feats / scale
    high, low = torch.as_tensor(np.array(high, dtype=np.int64)), torch.as_tensor(np.array(low, dtype=np.int64))
    # Scores per image, then differences per pair: no n_pairs x dim matrix (tens of thousands of
    # pairs stay cheap). Both orientations of a pair give the same BCE, so one suffices: the fit
    # is antisymmetric by construction.
    y = torch.as_tensor(np.array(target, dtype=np.float64))
    pw = None if weights is None else torch.as_tensor(np.array(weights, dtype=np.float64))
    if pw is not None:
        pw = pw / pw.mean()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        s = z @ w
        loss = torch.nn.functional.binary_cross_entropy_with_logits(s[high] - s[low], y, weight=pw) + l2 * (w @ w)
        loss.backward()
        return loss

    loss = float(opt.step(closure).detach())
    return (w.detach() / scale).numpy(), loss


def pair_accuracy(scores: np.ndarray, high: np.ndarray, low: np.ndarray) -> float:
    """Share of pairs whose high image scores higher (ties count half)."""
    d = scores[high] - scores[low]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / max(len(d), 1))


def choose_l2(features: np.ndarray, train: tuple[np.ndarray, np.ndarray, np.ndarray],
              val: tuple[np.ndarray, np.ndarray] | None, grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0),
              *, weights: np.ndarray | None = None) -> dict:
    """Fit for each L2 strength; keep the one with the best validation pair accuracy
    (the middle of the grid without validation pairs)."""
    fits = []
    for l2 in grid:
        w, loss = fit_pairwise_logistic(features, *train, l2=l2, weights=weights)
        acc = pair_accuracy(features @ w, *val) if val is not None and len(val[0]) else None
        fits.append({"l2": l2, "w": w, "train_loss": loss, "val_accuracy": acc})
    if val is None or not len(val[0]):
        return fits[len(fits) // 2]
    return max(fits, key=lambda f: (f["val_accuracy"], f["l2"]))  # ties: the stronger penalty
