"""Helpers for the study tests: tiny images, a small pairs table, a study database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def make_pairs(folder: Path, n_test: int = 20, n_train: int = 5, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Write 64x64 PNGs and a pairs.csv (test and train rows); returns (pairs, images)."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_test + n_train):
        split = "test" if i < n_test else "train"
        hi, lo = f"H{i:03d}x", f"L{i:03d}x"
        for pid in (hi, lo):
            arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(images / f"{pid}.png")
        rows.append({"high_id": hi, "low_id": lo, "user_id": f"u{i % 4}", "p": 0.97,
                     "delta_s": 1.0 + i / 10, "delta_t_days": 2.0, "split": split})
    pairs = folder / "pairs.csv"
    pd.DataFrame(rows).to_csv(pairs, index=False)
    return pairs, images


def make_study(folder: Path, *, n: int = 12, training: int = 2, attention: int = 2,
               n_test: int = 20, seed: int = 0, session_minutes: float = 30.0) -> str:
    """A study database file holding ``training`` + ``n`` + ``attention`` pairs; returns its path."""
    from iipa.study import Store, create_study

    pairs, images = make_pairs(folder, n_test=n_test, seed=seed)
    db = str(folder / "study.sqlite")
    store = Store(db, create=True)
    create_study(store, pairs, images, n=n, training=training, attention=attention, seed=seed,
                 session_minutes=session_minutes)
    store.dispose()
    return db
