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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from iipa.errors import IIPAError, ImageError
from iipa.pairs.table import attach_images, read_pairs
from iipa.study.stimuli import encode_decoy, encode_photo, equalise
from iipa.study.storage import BLANK_PREFIX, Pair, Stimulus, Store, Study


@dataclass
class StudySummary:
    training: int
    trials: int
    attention: int
    dropped_missing_images: int
    available: int
    dropped_unreadable_images: int = 0
    unreadable: list[str] = field(default_factory=list)  # "path: reason", first few


def _opt_str(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _opt_float(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


Side = tuple[str, "str | None", bytes]  # post id, source path, stimulus bytes


class _Writer:
    """Adds pairs and their stimuli to one open session; the bytes leave memory once flushed."""

    def __init__(self, s: Session, rng: np.random.Generator) -> None:
        self.s, self.rng = s, rng

    def add(self, kind: str, high: Side, low: Side, **extra: Any) -> None:
        high_first = bool(self.rng.random() < 0.5)
        a, b = (high, low) if high_first else (low, high)
        data_a, data_b = equalise(a[2], b[2])
        pair = Pair(kind=kind, a_id=a[0], a_path=a[1], b_id=b[0], b_path=b[1],
                    high_slot="a" if high_first else "b", **extra)
        self.s.add(pair)
        self.s.flush()  # assigns pair.id
        stimuli = [Stimulus(pair_id=pair.id, slot="a", data=data_a), Stimulus(pair_id=pair.id, slot="b", data=data_b)]
        self.s.add_all(stimuli)
        self.s.flush()
        for st in stimuli:
            self.s.expunge(st)

    def photo_pair(self, row: Any, kind: str, high: bytes, low: bytes) -> None:
        self.add(kind, (str(row.high_id), os.fspath(row.high_path), high),
                 (str(row.low_id), os.fspath(row.low_path), low),
                 user_id=_opt_str(row.user_id), p=_opt_float(row.p), delta_s=_opt_float(row.delta_s))


def _encode_rows(df: pd.DataFrame, order: np.ndarray, want: int, unreadable: list[str]) -> tuple[list, int]:
    """The first ``want`` rows in ``order`` whose two images re-encode, with their bytes;
    also returns how many rows of ``order`` were consumed."""
    chosen, used = [], 0
    for i in order:
        if len(chosen) == want:
            break
        used += 1
        row = df.iloc[int(i)]
        try:
            chosen.append((row, encode_photo(row["high_path"]), encode_photo(row["low_path"])))
        except ImageError as exc:
            unreadable.append(str(exc))
    return chosen, used


def _attention_photos(df: pd.DataFrame, unused: np.ndarray, trials: list, n: int,
                      rng: np.random.Generator) -> list[tuple[str, str, bytes]]:
    """``n`` photos for attention checks: first from test pairs the study does not use,
    then from the trials, always the more *or* less popular side at random, so seeing a
    photo in an attention check says nothing about its trial."""
    pool = [(str(r[f"{side}_id"]), os.fspath(r[f"{side}_path"]))
            for r in (df.iloc[int(i)] for i in unused[: 4 * n]) for side in ("high", "low")]
    rng.shuffle(pool)
    fallback = [(str(r[f"{side}_id"]), os.fspath(r[f"{side}_path"]))
                for r, _, _ in trials for side in (("high", "low") if rng.random() < 0.5 else ("low", "high"))]
    out: list[tuple[str, str, bytes]] = []
    for post_id, path in pool + fallback:
        if len(out) == n:
            break
        try:
            out.append((post_id, path, encode_photo(path)))
        except ImageError:
            continue
    return out


def create_study(store: Store, pairs_path: str | os.PathLike, images_dir: str | os.PathLike, *,
                 n: int = 1000, training: int = 8, attention: int = 10, seed: int = 0,
                 session_minutes: float = 30.0, attention_pass: float = 0.8,
                 name: str = "iipa 2AFC study") -> StudySummary:
    """Sample ``training`` + ``n`` pairs from the test split (disjoint) into a new study,
    with every image re-encoded into the database (:mod:`iipa.study.stimuli`).

    Fewer than ``n`` available test pairs: all are used (the summary says how many).
    Pairs with an unreadable image are skipped and counted.
    """
    with store.session() as s:
        if s.get(Study, 1) is not None:
            raise IIPAError(f"{store.engine.url}: already holds a study; use a new database")
    df = read_pairs(pairs_path, split="test")
    df, dropped = attach_images(df, images_dir)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    unreadable: list[str] = []
    chosen, used = _encode_rows(df, order, training + n, unreadable)
    if len(chosen) < training + 1:
        raise IIPAError(f"{pairs_path}: only {len(chosen)} test pairs with readable images in {images_dir}; "
                        f"need at least {training + 1} (training {training} + 1 trial)")
    train_rows, trial_rows = chosen[:training], chosen[training:]
    photos = _attention_photos(df, order[used:], trial_rows, attention, rng)
    with store.session() as s:
        s.add(Study(id=1, name=name, seed=seed, session_minutes=session_minutes,
                    attention_pass=attention_pass,
                    source=f"pairs={os.fspath(pairs_path)} images={os.fspath(images_dir)}"))
        w = _Writer(s, rng)
        for row, high, low in train_rows:
            w.photo_pair(row, "training", high, low)
        # Trials and attention checks interleaved at random, so pair ids (in every URL) do
        # not single out the attention checks as the highest ids.
        for i in rng.permutation(len(trial_rows) + len(photos)):
            if i < len(trial_rows):
                w.photo_pair(trial_rows[i][0], "trial", trial_rows[i][1], trial_rows[i][2])
            else:
                post_id, path, data = photos[i - len(trial_rows)]
                grey = int(rng.integers(100, 160))  # the decoy: nobody would like a grey square
                w.add("attention", (post_id, path, data), (f"{BLANK_PREFIX}{grey}", None, encode_decoy(grey)))
        s.commit()
    return StudySummary(training=len(train_rows), trials=len(trial_rows), attention=len(photos),
                        dropped_missing_images=dropped, available=len(df),
                        dropped_unreadable_images=len(unreadable), unreadable=unreadable[:5])


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
