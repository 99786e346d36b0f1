"""Pair datasets for Siamese training: decoding, random crops, random side swapping.

Every random choice for a pair (which side is A, where each crop falls) comes from a
generator seeded by (seed, epoch, pair index), so a resumed run sees exactly the data
the interrupted one would have seen, whichever worker decodes the pair.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from iipa.errors import IIPAError, ImageError
from iipa.images import DEFAULT_MAX_PIXELS
from iipa.pairs.table import attach_images, read_pairs
from iipa.profiles import Profile

Item = tuple[torch.Tensor, torch.Tensor, float, int] | None


def load_pairs(pairs: str | os.PathLike, images: str | os.PathLike, split: str) -> tuple[pd.DataFrame, int]:
    """The ``split`` rows of a pairs table with image paths; also how many rows lacked an image."""
    df = read_pairs(pairs, split=split)
    if not os.path.isdir(images):
        raise IIPAError(f"{images}: no such images folder")
    return attach_images(df, images)


def flip_labels(n: int, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask flipping exactly round(fraction * n) labels (the paper's Table 2 noise)."""
    mask = np.zeros(n, dtype=bool)
    k = int(round(fraction * n))
    if k:
        mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return mask


class PairDataset(Dataset):
    """(A uint8 CHW, B uint8 CHW, target) where target = P(A more popular than B).

    Without swapping A is always the more popular image (target 1); with ``swap`` half
    the pairs are presented the other way round (target 0), so the network cannot
    learn a side. ``soft`` uses the pair's P (column ``p``) instead of 1. ``flipped``
    marks pairs whose label is deliberately wrong (label-noise experiment).
    """

    def __init__(
        self,
        df: pd.DataFrame,
        profile: Profile,
        *,
        train: bool = True,
        swap: bool = True,
        soft: bool = False,
        flipped: np.ndarray | None = None,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.high = df["high_path"].astype(str).tolist()
        self.low = df["low_path"].astype(str).tolist()
        p = pd.to_numeric(df["p"], errors="coerce") if "p" in df else pd.Series([np.nan] * len(df))
        self.p = [1.0 if not soft or np.isnan(v) else float(v) for v in p]
        self.flipped = flipped if flipped is not None else np.zeros(len(df), dtype=bool)
        self.profile = profile
        self.train = train
        self.swap = swap
        self.seed = seed
        self.epoch = 0
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.high)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _image(self, path: str, rng: random.Random) -> torch.Tensor:
        return self.profile.prepare(path, max_pixels=self.max_pixels, train=self.train, rng=rng)

    def __getitem__(self, index: int) -> Item:
        """The pair at ``index``; if one of its images cannot be read, the next readable pair
        stands in (so batches keep their size and DDP ranks stay in step), and the 4th
        element counts the pairs skipped that way."""
        for skipped in range(min(len(self), 16)):
            item = self._pair((index + skipped) % len(self))
            if item is not None:
                return (*item, skipped)
        return None

    def _pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        target = self.p[index]
        if self.flipped[index]:
            target = 1.0 - target
        try:
            a, b = self._image(self.high[index], rng), self._image(self.low[index], rng)
        except ImageError:
            return None
        if self.swap and rng.random() < 0.5:
            a, b, target = b, a, 1.0 - target
        return a, b, target


def collate_pairs(items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Stack the pairs; the last element counts pairs skipped for unreadable images."""
    good = [it for it in items if it is not None]
    skipped = sum(it[3] for it in good) + len(items) - len(good)
    if not good:
        empty = torch.empty(0, dtype=torch.uint8)
        return empty, empty, torch.empty(0), skipped
    a = torch.stack([it[0] for it in good])
    b = torch.stack([it[1] for it in good])
    y = torch.tensor([it[2] for it in good], dtype=torch.float32)
    return a, b, y, skipped


class _Indices(torch.utils.data.Sampler):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def epoch_indices(n: int, *, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """This rank's shuffled pair order for ``epoch`` (DistributedSampler; drop_last so all
    ranks take the same number of steps and DDP's all-reduce never waits forever)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=world > 1)
    sampler.set_epoch(epoch)
    return list(sampler)


def pair_loader(
    dataset: PairDataset,
    indices: list[int],
    *,
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of ``indices`` in that order (a resumed epoch passes the untrained tail)."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=_Indices(indices), num_workers=workers,
        collate_fn=collate_pairs, pin_memory=pin_memory, drop_last=False,
        prefetch_factor=4 if workers else None, persistent_workers=False,
    )
