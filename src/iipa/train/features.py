"""The default recipe's frozen-feature cache, in the run folder, in fixed chunks.

Features (the input of the score head) are computed once per image and stored under
``OUT/features/<key>/``, where the key hashes what changes them: backbone and its weights,
profile (decode included), views (test-time crops averaged), flips and precision. Images are
named by the SHA-256 of their bytes, sorted, and cut into fixed chunks of :data:`CHUNK`; a
chunk is one forward batch and one file, written atomically. A killed run restarts from the
chunks on disk, and a resumed run recomputes whole chunks with the same members, so batch
composition (and with it the floating-point result) cannot differ from an uninterrupted run.
Features are computed and stored in fp32 by default: scoring runs fp32 on the CPU, and bf16
features moved Lite0's scaled scores by up to 8 points.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iipa.backbones.popularity_net import PopularityNet
from iipa.errors import ImageError
from iipa.fileio import write_text
from iipa.model.checkpoint import atomic_torch_save
from iipa.progress import progress as progress_bar

CHUNK = 64  # images per chunk file and per forward batch


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pre_logits(model: PopularityNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """Input of the score head for any backbone (a forward hook on the head)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = model.head.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
        try:
            model.net(x)
        finally:
            handle.remove()
        return seen[0]
    return run


def cache_key(model: PopularityNet, *, pretrained: str, views: int, flips: Sequence[bool], precision: str) -> dict:
    return {"arch": model.arch, "pretrained": pretrained, "profile": model.profile.to_dict(), "views": views,
            "flips": list(flips), "precision": precision}


class FeatureCache:
    """Features of images by content, ``n_flips x dim`` fp32 per image (NaN: unreadable)."""

    def __init__(self, root: Path, model: PopularityNet, key: dict[str, Any], *, device: torch.device,
                 amp_dtype: torch.dtype | None, progress: bool | None) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = root / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(self.dir / "key.json", json.dumps(key, indent=2, sort_keys=True) + "\n")
        self.model, self.key, self.device, self.amp_dtype, self.progress = model, key, device, amp_dtype, progress
        self.features_of = pre_logits(model)
        self.computed_chunks = 0

    def features(self, paths: Sequence[str]) -> np.ndarray:
        """``len(paths) x n_flips x dim`` features, computing the chunks not on disk yet."""
        digests = [file_digest(p) for p in paths]
        path_of = dict(zip(digests, paths, strict=True))
        order = sorted(path_of)
        chunks = [order[k:k + CHUNK] for k in range(0, len(order), CHUNK)]
        found: dict[str, torch.Tensor] = {}
        bar = progress_bar(len(order), enabled=self.progress, desc="features", unit="img")
        try:
            for members in chunks:
                name = hashlib.sha256("\n".join(members).encode()).hexdigest()[:24]
                file = self.dir / f"chunk-{name}.pt"
                if file.is_file():
                    feats = torch.load(file, map_location="cpu", weights_only=True)["features"]
                else:
                    feats = self.extract_chunk([path_of[d] for d in members])
                    atomic_torch_save({"digests": members, "features": feats}, file)
                    self.computed_chunks += 1
                found.update(zip(members, feats, strict=True))
                bar.update(len(members))
        finally:
            bar.close()
        return torch.stack([found[d] for d in digests]).numpy()

    @torch.no_grad()
    def extract_chunk(self, paths: Sequence[str]) -> torch.Tensor:
        """One chunk in one forward batch: ``len(paths) x n_flips x dim`` (mean over the views)."""
        profile, views = self.model.profile, self.key["views"]
        prepared: list[torch.Tensor | None] = []
        for p in paths:
            try:
                prepared.append(torch.from_numpy(profile.view_array(p, views)).permute(0, 3, 1, 2))
            except ImageError:
                prepared.append(None)
        shape = next((t.shape for t in prepared if t is not None), None)
        if shape is None:
            return torch.full((len(paths), len(self.key["flips"]), self._dim()), float("nan"))
        x = torch.cat([t if t is not None else torch.zeros(shape, dtype=torch.uint8) for t in prepared])
        x = profile.normalize(x).to(self.device).contiguous(memory_format=torch.channels_last)
        out = []
        for flip in self.key["flips"]:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                h = self.features_of(x.flip(-1) if flip else x).float().cpu()
            out.append(h.reshape(len(paths), shape[0], -1).mean(1))
        feats = torch.stack(out, 1)
        feats[torch.tensor([t is None for t in prepared])] = float("nan")
        return feats.contiguous()

    def _dim(self) -> int:
        return int(self.model.head.in_features)
