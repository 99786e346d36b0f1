"""The linear-probe fit (train/probe.py): per-image scores give the same optimum as pair rows."""

from __future__ import annotations

import numpy as np
import torch

from iipa.train.probe import choose_l2, fit_pairwise_logistic, pair_accuracy


def _pairs(n_images: int = 60, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_images, dim)) * rng.uniform(0.5, 3.0, size=dim)
    truth = feats @ rng.normal(size=dim)
    i, j = np.triu_indices(n_images, 1)
    high, low = np.where(truth[i] >= truth[j], i, j), np.where(truth[i] >= truth[j], j, i)
    target = rng.uniform(0.6, 1.0, size=len(high))
    return feats, high, low, target


def test_fit_is_the_optimum_of_the_both_orientations_objective():
    feats, high, low, target = _pairs()
    l2 = 0.3
    w, _ = fit_pairwise_logistic(feats, high, low, target, l2=l2)
    # The textbook objective: pair-difference rows in both orientations, on standardised features.
    scale = feats.std(0, ddof=1)  # as torch.std
    x = torch.as_tensor((feats[high] - feats[low]) / scale)
    x = torch.cat([x, -x])
    y = torch.as_tensor(np.concatenate([target, 1 - target]))
    v = torch.as_tensor(w * scale, dtype=torch.float64).requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ v, y) + l2 * (v @ v)
    loss.backward()
    assert float(v.grad.norm()) < 1e-5


def test_probe_ranks_held_out_images_and_choose_l2_keeps_the_best():
    feats, high, low, target = _pairs(seed=1)
    train, val = np.arange(len(high)) % 3 != 0, np.arange(len(high)) % 3 == 0
    fit = choose_l2(feats, (high[train], low[train], target[train]), (high[val], low[val]), grid=(0.01, 100.0))
    assert fit["l2"] in (0.01, 100.0)
    assert pair_accuracy(feats @ fit["w"], high[val], low[val]) > 0.9
