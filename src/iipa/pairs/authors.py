"""Import the authors' released pair list into the pairs table format.

The list (github.com/dingkeyan93/intrinsic-image-popularity) is a CSV with the columns
``Low_popularity,High_popularity``: Instagram shortcodes, the less popular image first.
It carries no user, P, ΔS or Δt, and no split: these columns are left empty and every
pair goes to ``split`` (``test`` by default: the list is for evaluation).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from iipa.errors import IIPAError
from iipa.pairs.table import PAIRS_COLUMNS, SPLITS

AUTHORS_COLUMNS = ("Low_popularity", "High_popularity")


def read_authors_pairs(path: str | os.PathLike, *, split: str = "test") -> pd.DataFrame:
    """Read the authors' CSV as a pairs frame (PAIRS_COLUMNS); validates ids and duplicates."""
    path = Path(path)
    if split not in SPLITS:
        raise IIPAError(f"unknown split {split!r}; expected {', '.join(SPLITS)}")
    if not path.is_file():
        raise IIPAError(f"{path}: no such file")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001 - any parser error is a bad file
        raise IIPAError(f"{path}: cannot read CSV ({exc})") from None
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in AUTHORS_COLUMNS if c not in raw.columns]
    if missing:
        raise IIPAError(f"{path}: lacks column(s) {', '.join(missing)} (has {', '.join(raw.columns)})")
    low = raw["Low_popularity"].str.strip()
    high = raw["High_popularity"].str.strip()
    for name, col in (("Low_popularity", low), ("High_popularity", high)):
        empty = col == ""
        if empty.any():
            raise IIPAError(f"{path}: row {int(empty.idxmax()) + 2}: empty {name}")
    same = low == high
    if same.any():
        raise IIPAError(f"{path}: row {int(same.idxmax()) + 2}: an image paired with itself ({low[same.idxmax()]})")
    pairs = pd.DataFrame({"high_id": high, "low_id": low})
    for col in PAIRS_COLUMNS[2:]:
        pairs[col] = None
    pairs["split"] = split
    pairs["p"] = pairs["p"].astype("float64")
    pairs["delta_s"] = pairs["delta_s"].astype("float64")
    pairs["delta_t_days"] = pairs["delta_t_days"].astype("float64")
    return pairs.drop_duplicates(["high_id", "low_id"]).reset_index(drop=True)
