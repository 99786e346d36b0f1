"""Creating a study from a pairs table, and each participant's seeded trial plan.

A participant's order of trials and the left/right placement of every pair are a pure
function of (study seed, participant code, pair id): a reload, a second session or a
server restart shows the same layout, so the server can check a "left" answer against
the layout it served without remembering anything but the database.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iipa.errors import IIPAError
from iipa.pairs.table import attach_images, read_pairs
from iipa.study.storage import BLANK_PREFIX, Pair, Store, Study


@dataclass
class StudySummary:
    training: int
    trials: int
    attention: int
    dropped_missing_images: int
    available: int


def _rows_to_pairs(df: pd.DataFrame, kind: str, rng: np.random.Generator) -> list[Pair]:
    out = []
    for row in df.itertuples(index=False):
        high_first = bool(rng.random() < 0.5)
        hi = (str(row.high_id), os.fspath(row.high_path))
        lo = (str(row.low_id), os.fspath(row.low_path))
        (a_id, a_path), (b_id, b_path) = (hi, lo) if high_first else (lo, hi)
        out.append(Pair(kind=kind, a_id=a_id, b_id=b_id, a_path=a_path, b_path=b_path,
                        high_slot="a" if high_first else "b", user_id=_opt_str(row.user_id),
                        p=_opt_float(row.p), delta_s=_opt_float(row.delta_s)))
    return out


def _opt_str(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _opt_float(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def attention_pairs(df: pd.DataFrame, n: int, rng: np.random.Generator) -> list[Pair]:
    """Obvious pairs: a real photo against a flat grey square (which nobody would like).

    The photos come from ``df``'s more popular images, so they look like the trials.
    """
    if n == 0:
        return []
    picks = rng.choice(len(df), size=n, replace=len(df) < n)
    out = []
    for i in picks:
        row = df.iloc[int(i)]
        real = (str(row["high_id"]), os.fspath(row["high_path"]))
        blank = (f"{BLANK_PREFIX}{int(rng.integers(100, 160))}", None)  # grey level
        high_first = bool(rng.random() < 0.5)
        (a_id, a_path), (b_id, b_path) = (real, blank) if high_first else (blank, real)
        out.append(Pair(kind="attention", a_id=a_id, b_id=b_id, a_path=a_path, b_path=b_path,
                        high_slot="a" if high_first else "b"))
    return out


def create_study(store: Store, pairs_path: str | os.PathLike, images_dir: str | os.PathLike, *,
                 n: int = 1000, training: int = 8, attention: int = 10, seed: int = 0,
                 session_minutes: float = 30.0, attention_pass: float = 0.8,
                 name: str = "iipa 2AFC study") -> StudySummary:
    """Sample ``training`` + ``n`` pairs from the test split (disjoint) into a new study.

    Fewer than ``n`` available test pairs: all are used (the summary says how many).
    """
    with store.session() as s:
        if s.get(Study, 1) is not None:
            raise IIPAError(f"{store.engine.url}: already holds a study; use a new database")
    df = read_pairs(pairs_path, split="test")
    df, dropped = attach_images(df, images_dir)
    if len(df) < training + 1:
        raise IIPAError(f"{pairs_path}: only {len(df)} test pairs with images in {images_dir}; "
                        f"need at least {training + 1} (training {training} + 1 trial)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    train_df = df.iloc[order[:training]]
    trial_df = df.iloc[order[training:training + n]]
    rows = (_rows_to_pairs(train_df, "training", rng) + _rows_to_pairs(trial_df, "trial", rng)
            + attention_pairs(trial_df, attention, rng))
    with store.session() as s:
        s.add(Study(id=1, name=name, seed=seed, session_minutes=session_minutes,
                    attention_pass=attention_pass,
                    source=f"pairs={os.fspath(pairs_path)} images={os.fspath(images_dir)}"))
        s.add_all(rows)
        s.commit()
    return StudySummary(training=len(train_df), trials=len(trial_df), attention=attention,
                        dropped_missing_images=dropped, available=len(df))


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def left_slot(study_seed: int, code: str, pair_id: int) -> str:
    """Which slot (a/b) this participant sees on the left for this pair."""
    return "a" if _seed(study_seed, code, pair_id, "side") % 2 == 0 else "b"


def trial_order(study_seed: int, code: str, pair_ids: list[int]) -> list[int]:
    """This participant's order of the trial and attention pairs."""
    ids = sorted(pair_ids)
    random.Random(_seed(study_seed, code, "order")).shuffle(ids)
    return ids
