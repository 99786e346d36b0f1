"""The pairs table: one row per popularity-discriminable image pair (PDIP).

Columns (Parquet; CSV is read too):

=============== ======= ==========================================================
high_id         string  post id (shortcode) of the more popular image
low_id          string  post id of the less popular image
user_id         string  the user who posted both
p               float   P(Q_high >= Q_low | S_high, S_low) = Phi(ΔS / (sqrt(2) σ))
delta_s         float   S_high - S_low (log likes)
delta_t_days    float   |taken_at_high - taken_at_low| in days
split           string  train | val | test
=============== ======= ==========================================================

Only ``high_id`` and ``low_id`` are required to read a table (the authors' released
lists have nothing else); missing optional columns are filled with nulls, and a missing
``split`` means ``test``. Images live in an id-named folder: ``<images>/<post_id>.<ext>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from iipa.errors import IIPAError
from iipa.fileio import atomic_path
from iipa.images import image_path_for

PAIRS_COLUMNS = ("high_id", "low_id", "user_id", "p", "delta_s", "delta_t_days", "split")
REQUIRED = ("high_id", "low_id")
SPLITS = ("train", "val", "test")


def read_pairs(path: str | os.PathLike, *, split: str | None = None) -> pd.DataFrame:
    """Read and validate a pairs table; ``split`` keeps only that split."""
    path = Path(path)
    if not path.is_file():
        raise IIPAError(f"{path}: no such pairs file")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype={"high_id": str, "low_id": str, "user_id": str})
        else:
            df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is a bad file
        raise IIPAError(f"{path}: cannot read pairs table ({exc.__class__.__name__}: {exc})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise IIPAError(f"{path}: pairs table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
    for col in PAIRS_COLUMNS:
        if col not in df.columns:
            df[col] = "test" if col == "split" else None
    bad = df[df["high_id"].isna() | df["low_id"].isna()]
    if len(bad):
        raise IIPAError(f"{path}: row {int(bad.index[0]) + 2 if path.suffix == '.csv' else int(bad.index[0])}: empty post id")
    df["high_id"] = df["high_id"].astype(str)
    df["low_id"] = df["low_id"].astype(str)
    unknown = sorted(set(df["split"].dropna().astype(str)) - set(SPLITS))
    if unknown:
        raise IIPAError(f"{path}: unknown split value(s) {unknown}; expected {', '.join(SPLITS)}")
    if split is not None:
        if split not in SPLITS:
            raise IIPAError(f"unknown split {split!r}; expected {', '.join(SPLITS)}")
        df = df[df["split"] == split]
    return df.reset_index(drop=True)


def write_pairs(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a pairs table (Parquet, or CSV by extension) atomically."""
    path = Path(path)
    cols = list(PAIRS_COLUMNS) + [c for c in df.columns if c not in PAIRS_COLUMNS]
    out = df[[c for c in cols if c in df.columns]]
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            # Not through iipa.csvsafe: a pairs table is data that iipa reads back, and post ids
            # must round-trip (Instagram shortcodes may start with "-"). Parquet is the default.
            out.to_csv(tmp, index=False)
        else:
            out.to_parquet(tmp, index=False)
    return path


def attach_images(df: pd.DataFrame, images_dir: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """Add ``high_path``/``low_path`` columns; drop pairs with a missing image.

    Returns the kept pairs and how many were dropped, so callers can report the count.
    """
    cache: dict[str, str | None] = {}

    def find(post_id: str) -> str | None:
        if post_id not in cache:
            p = image_path_for(images_dir, post_id)
            cache[post_id] = os.fspath(p) if p else None
        return cache[post_id]

    out = df.copy()
    out["high_path"] = [find(i) for i in out["high_id"]]
    out["low_path"] = [find(i) for i in out["low_id"]]
    keep = out["high_path"].notna() & out["low_path"].notna()
    return out[keep].reset_index(drop=True), int((~keep).sum())
