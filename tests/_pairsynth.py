"""A generated pair set with a known answer: the brighter image is the more popular one.

Every image is coloured noise around a brightness level; a pair's more popular image is
the brighter one, so a network can only get the order right by looking at the pixels.
Each image appears in one pair only, so the test split is made of unseen images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iipa.pairs.table import write_pairs


def make_pair_set(root: Path, *, n_train: int = 300, n_val: int = 60, n_test: int = 100, size: int = 80,
                  seed: int = 0, min_gap: float = 0.12) -> tuple[Path, Path]:
    """Write ``root/images/<id>.png``, ``root/pairs.parquet`` and ``root/posts.parquet`` (likes driven
    by followers, a little by brightness); return (pairs, images)."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, posts, k = [], [], 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for _ in range(n):
            lo = rng.uniform(0.15, 0.85 - min_gap)
            hi = rng.uniform(lo + min_gap, 0.85)
            ids = []
            for level in (hi, lo):
                noise = rng.normal(0, 0.12, size=(size, size, 3)) + rng.normal(0, 0.05, size=3)
                arr = np.clip((level + noise) * 255, 0, 255).astype(np.uint8)
                post_id = f"p{k:05d}"
                Image.fromarray(arr).save(images / f"{post_id}.png")
                ids.append(post_id)
                user = len(rows) % 7  # both images of a pair come from one user
                followers = 100 * 3 ** user  # context that dominates absolute likes
                posts.append({"post_id": post_id, "user_id": f"u{user}", "followers": followers,
                              "following": 50 + user, "user_posts": 10 * user + 1,
                              "caption": "#tag " * (user % 3) + "photo",
                              "likes": int(followers * 0.05 * np.exp(level))})
                k += 1
            rows.append({"high_id": ids[0], "low_id": ids[1], "user_id": f"u{len(rows) % 7}", "p": 0.97,
                         "delta_s": float(hi - lo), "delta_t_days": 1.0, "split": split})
    pairs = write_pairs(pd.DataFrame(rows), root / "pairs.parquet")
    pd.DataFrame(posts).to_parquet(root / "posts.parquet", index=False)
    return pairs, images
