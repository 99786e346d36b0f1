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

A CSV table is read without pandas (:func:`read_pair_columns`, what ``iipa evaluate`` uses
in the core install); Parquet and DataFrames need the pairs extra.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iipa.constants import SPLITS as SPLITS  # its home is numpy-free (the CLI's parsers read it)
from iipa.csvsafe import CSV_LINE_END
from iipa.errors import IIPAError
from iipa.extras import require
from iipa.fileio import atomic_path
from iipa.images import image_path_for

if TYPE_CHECKING:
    import pandas as pd

PAIRS_COLUMNS = ("high_id", "low_id", "user_id", "p", "delta_s", "delta_t_days", "split")
REQUIRED = ("high_id", "low_id")
FLOAT_COLUMNS = ("p", "delta_s", "delta_t_days")


def read_pair_columns(path: str | os.PathLike, *, split: str | None = None) -> dict[str, list[Any]]:
    """A validated pairs table as ``{column: values}`` (every :data:`PAIRS_COLUMNS` present).
    CSV needs nothing beyond the core install; Parquet goes through :func:`read_pairs`."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        require("pairs", f"reading the Parquet pairs table {path} (CSV needs nothing extra)")
        df = read_pairs(path, split=split)
        return {c: df[c].tolist() for c in df.columns}
    if not path.is_file():
        raise IIPAError(f"{path}: no such pairs file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            _check_columns(path, header)
            cols: dict[str, list[Any]] = {c: [] for c in dict.fromkeys([*PAIRS_COLUMNS, *header])}
            for row in reader:
                _append_csv_row(path, reader.line_num, row, cols)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IIPAError(f"{path}: cannot read pairs table ({exc.__class__.__name__}: {exc})") from None
    _check_splits(path, cols["split"])
    if split is not None:
        keep = [i for i, s in enumerate(cols["split"]) if s == _known_split(split)]
        cols = {c: [v[i] for i in keep] for c, v in cols.items()}
    return cols


def _append_csv_row(path: Path, line: int, row: dict[str, str | None], cols: dict[str, list[Any]]) -> None:
    for col in cols:
        text = row.get(col)
        text = None if text is None or text == "" else text
        if col in ("high_id", "low_id") and text is None:
            raise IIPAError(f"{path}: row {line}: empty post id ({col})")
        if col in FLOAT_COLUMNS:
            try:
                text = math.nan if text is None else float(text)
            except ValueError:
                raise IIPAError(f"{path}: row {line}: {col} {text!r} is not a number") from None
        elif col == "split" and text is None:
            text = "test" if "split" not in row else None
        cols[col].append(text)


def _check_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise IIPAError(f"{path}: pairs table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, columns))})")


def _check_splits(path: Path, values: list[Any]) -> None:
    unknown = sorted({str(v) for v in values if v is not None and v == v} - set(SPLITS))
    if unknown:
        raise IIPAError(f"{path}: unknown split value(s) {unknown}; expected {', '.join(SPLITS)}")


def _known_split(split: str) -> str:
    if split not in SPLITS:
        raise IIPAError(f"unknown split {split!r}; expected {', '.join(SPLITS)}")
    return split


def read_pairs(path: str | os.PathLike, *, split: str | None = None) -> pd.DataFrame:
    """Read and validate a pairs table as a DataFrame (the pairs extra); ``split`` keeps only that split."""
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".csv":
        return pd.DataFrame(read_pair_columns(path, split=split))
    if not path.is_file():
        raise IIPAError(f"{path}: no such pairs file")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is a bad file
        raise IIPAError(f"{path}: cannot read pairs table ({exc.__class__.__name__}: {exc})") from None
    _check_columns(path, list(df.columns))
    for col in PAIRS_COLUMNS:
        if col not in df.columns:
            df[col] = "test" if col == "split" else None
    bad = df[df["high_id"].isna() | df["low_id"].isna()]
    if len(bad):
        raise IIPAError(f"{path}: row {int(bad.index[0])}: empty post id")
    df["high_id"] = df["high_id"].astype(str)
    df["low_id"] = df["low_id"].astype(str)
    _check_splits(path, df["split"].dropna().astype(str).unique().tolist())
    if split is not None:
        df = df[df["split"] == _known_split(split)]
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
            out.to_csv(tmp, index=False, lineterminator=CSV_LINE_END)
        else:
            out.to_parquet(tmp, index=False)
    return path


def image_finder(images_dir: str | os.PathLike):
    """``find(post_id) -> path or None`` in an id-named image folder (each id looked up once)."""
    cache: dict[str, str | None] = {}

    def find(post_id: str) -> str | None:
        if post_id not in cache:
            p = image_path_for(images_dir, post_id)
            cache[post_id] = os.fspath(p) if p else None
        return cache[post_id]

    return find


def attach_images(df: pd.DataFrame, images_dir: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """Add ``high_path``/``low_path`` columns; drop pairs with a missing image.

    Returns the kept pairs and how many were dropped, so callers can report the count.
    """
    find = image_finder(images_dir)
    out = df.copy()
    out["high_path"] = [find(i) for i in out["high_id"]]
    out["low_path"] = [find(i) for i in out["low_id"]]
    keep = out["high_path"].notna() & out["low_path"].notna()
    return out[keep].reset_index(drop=True), int((~keep).sum())
