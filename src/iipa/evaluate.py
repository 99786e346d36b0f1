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

Multi-crop averaging (``crops=5``: four corners + centre of the profile's crop; ``10``:
the same plus horizontal flips) averages each image's scores over the crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from iipa.errors import IIPAError, ImageError
from iipa.images import DEFAULT_MAX_PIXELS, open_image
from iipa.models import PopularityNet
from iipa.pairs.table import SPLITS, attach_images, read_pairs
from iipa.profiles import Profile
from iipa.scoring import Scorer

CROPS = (1, 5, 10)


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


def crop_boxes(profile: Profile, width: int, height: int, crops: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes (left, top, right, bottom) of the profile's crop size in a resized image."""
    c = profile.crop
    if c is None or crops == 1:
        return [(0, 0, width, height)] if c is None else [_centre(width, height, c)]
    corners = [(0, 0), (width - c, 0), (0, height - c), (width - c, height - c)]
    return [(x, y, x + c, y + c) for x, y in corners] + [_centre(width, height, c)]


def _centre(w: int, h: int, c: int) -> tuple[int, int, int, int]:
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))  # torchvision CenterCrop
    return (left, top, left + c, top + c)


class _CropDataset(Dataset):
    def __init__(self, paths: Sequence[str], profile: Profile, crops: int, fast_decode: bool, max_pixels: int) -> None:
        self.paths, self.profile, self.crops = list(paths), profile, crops
        self.draft = profile.draft_size if fast_decode else None
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None]:
        try:
            img = self.profile.resize_image(open_image(self.paths[i], draft_size=self.draft, max_pixels=self.max_pixels))
        except ImageError:
            return i, None
        views = [img.crop(box) for box in crop_boxes(self.profile, img.width, img.height, self.crops)]
        if self.crops == 10 or (self.crops > 1 and self.profile.crop is None):
            views += [v.transpose(Image.FLIP_LEFT_RIGHT) for v in views]
        arrays = [np.asarray(v.convert("RGB"), dtype=np.uint8) for v in views]
        return i, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _collate(batch):
    return batch


def score_paths(
    model: PopularityNet | str | os.PathLike,
    paths: Sequence[str],
    *,
    crops: int = 1,
    device: str | None = None,
    precision: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    fast_decode: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    scorer: Scorer | None = None,
) -> np.ndarray:
    """One score per path (NaN for unreadable images), averaged over ``crops`` views."""
    if crops not in CROPS:
        raise IIPAError(f"--crops must be one of {', '.join(map(str, CROPS))}, not {crops}")
    scorer = scorer or Scorer(model, device=device, precision=precision, batch_size=batch_size)
    out = np.full(len(paths), np.nan)
    dataset = _CropDataset(paths, scorer.profile, crops, fast_decode, max_pixels)
    per_batch = max(1, batch_size // max(1, crops))
    loader = DataLoader(dataset, batch_size=per_batch, num_workers=workers, collate_fn=_collate,
                        prefetch_factor=2 if workers else None)
    for batch in loader:
        good = [(i, t) for i, t in batch if t is not None]
        if not good:
            continue
        stack = torch.cat([t for _, t in good])
        scores = scorer.score_batch(stack).view(len(good), -1).mean(dim=1)
        out[[i for i, _ in good]] = scores.numpy()
    return out


def evaluate_pairs(
    model: PopularityNet | str | os.PathLike,
    pairs: str | os.PathLike | pd.DataFrame,
    images: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    **score_kwargs: Any,
) -> dict[str, Any]:
    """Pairwise accuracy per split (and over all of them) of ``model`` on a pairs table.

    ``max_pairs`` evaluates a seeded random subset of each split (for quick validation).
    Pairs whose images are missing from ``images`` are dropped and counted.
    """
    df = read_pairs(pairs) if not isinstance(pairs, pd.DataFrame) else pairs
    if not os.path.isdir(images):
        raise IIPAError(f"{images}: no such images folder")
    wanted = list(splits) if splits else [s for s in SPLITS if (df["split"] == s).any()]
    df = df[df["split"].isin(wanted)]
    if max_pairs is not None:
        parts = [g.sample(n=min(len(g), max_pairs), random_state=seed) for _, g in df.groupby("split")]
        df = pd.concat(parts) if parts else df
    df, missing = attach_images(df, images)
    paths = sorted(set(df["high_path"]) | set(df["low_path"]))
    scores = dict(zip(paths, score_paths(model, paths, **score_kwargs), strict=True))
    hi = df["high_path"].map(scores).to_numpy()
    lo = df["low_path"].map(scores).to_numpy()
    result: dict[str, Any] = {"splits": {}, "missing_images_pairs": missing, "images_scored": len(paths),
                              "unreadable_images": int(sum(math.isnan(v) for v in scores.values())),
                              "crops": score_kwargs.get("crops", 1)}
    for split in wanted:
        mask = (df["split"] == split).to_numpy()
        result["splits"][split] = pairwise_accuracy(hi[mask], lo[mask])
    result["all"] = pairwise_accuracy(hi, lo)
    return result
