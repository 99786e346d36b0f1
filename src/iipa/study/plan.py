"""Creating a study from a pairs table, and each participant's trial plan.

Two sources of randomness, kept apart:

- the study ``seed`` (reproducible, printed in commands) chooses only *which* test pairs
  and attention photos are used;
- the study's ``secret`` (``secrets.token_bytes``, stored in the database, never shown)
  decides everything a participant could turn into the answer: which slot holds the more
  popular image, where the attention checks sit among the pair ids, and for each
  participant the order of the trials and the left/right placement of every pair (HMAC of
  the participant code and pair id). A reload, a second session or a server restart shows
  the same layout, and knowing the seed, the code and the pair ids predicts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from iipa.errors import IIPAError, ImageError
from iipa.pairs.table import attach_images, read_pairs
from iipa.study.stimuli import (
    ATTENTION_PICK,
    ATTENTION_SKIP,
    encode_instructions,
    encode_photo,
    equalise,
)
from iipa.study.storage import SECRET_BYTES, Pair, Stimulus, Store, Study


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

    def __init__(self, s: Session, key: np.random.Generator) -> None:
        self.s, self.key = s, key

    def add(self, kind: str, high: Side, low: Side, **extra: Any) -> None:
        high_first = bool(self.key.random() < 0.5)
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
                      rng: np.random.Generator) -> list[tuple[str, str]]:
    """Candidate photos (post id, path) for ``n`` attention checks: first from test pairs
    the study does not use, then from the trials, the more *or* less popular side at
    random, so seeing a photo in an attention check says nothing about its trial."""
    pool = [(str(r[f"{side}_id"]), os.fspath(r[f"{side}_path"]))
            for r in (df.iloc[int(i)] for i in unused[: 4 * n]) for side in ("high", "low")]
    rng.shuffle(pool)
    fallback = [(str(r[f"{side}_id"]), os.fspath(r[f"{side}_path"]))
                for r, _, _ in trials for side in (("high", "low") if rng.random() < 0.5 else ("low", "high"))]
    return list(dict.fromkeys(pool + fallback))


def _attention_checks(photos: list[tuple[str, str]], n: int, key: np.random.Generator) -> list[tuple[Side, Side]]:
    """Up to ``n`` attention checks, each (the side to pick, the side to skip): two readable
    photos with the instruction written on each; the secret decides which one is picked."""
    checks: list[tuple[Side, Side]] = []
    waiting: tuple[Side, Side] | None = None
    for post_id, path in photos:
        if len(checks) == n:
            break
        try:
            pick, skip = encode_instructions(path, (ATTENTION_PICK, ATTENTION_SKIP))
        except ImageError:
            continue
        sides = ((post_id, path, pick), (post_id, path, skip))
        if waiting is None:
            waiting = sides
        else:
            checks.append((waiting[0], sides[1]) if key.random() < 0.5 else (sides[0], waiting[1]))
            waiting = None
    return checks


def _check_post_ids(df: pd.DataFrame, pairs_path: str | os.PathLike) -> None:
    """Post ids name files in the images folder: refuse any that could name a file elsewhere."""
    csv = Path(pairs_path).suffix.lower() == ".csv"
    for col in ("high_id", "low_id"):
        for index, value in df[col].items():
            bad = value in ("", ".", "..") or any(ch in value for ch in ("/", "\\", "\0", os.sep))
            if bad:
                row = int(index) + 2 if csv else int(index)
                raise IIPAError(f"{pairs_path}: row {row}: {col} {value!r} is not a post id "
                                "(path separators and '..' are refused: ids name files in --images)")


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
    df = read_pairs(pairs_path)
    _check_post_ids(df, pairs_path)
    df, dropped = attach_images(df[df["split"] == "test"].reset_index(drop=True), images_dir)
    rng = np.random.default_rng(seed)  # which pairs and photos: reproducible
    secret = secrets.token_bytes(SECRET_BYTES)
    key = np.random.default_rng(int.from_bytes(secret, "big"))  # the answer key: secret
    order = rng.permutation(len(df))
    unreadable: list[str] = []
    chosen, used = _encode_rows(df, order, training + n, unreadable)
    if len(chosen) < training + 1:
        raise IIPAError(f"{pairs_path}: only {len(chosen)} test pairs with readable images in {images_dir}; "
                        f"need at least {training + 1} (training {training} + 1 trial)")
    train_rows, trial_rows = chosen[:training], chosen[training:]
    photos = _attention_photos(df, order[used:], trial_rows, attention, rng)
    checks = _attention_checks(photos, attention, key)
    with store.session(write=True) as s:
        s.add(Study(id=1, name=name, seed=seed, secret=secret, session_minutes=session_minutes,
                    attention_pass=attention_pass,
                    source=f"pairs={os.fspath(pairs_path)} images={os.fspath(images_dir)}"))
        w = _Writer(s, key)
        for row, high, low in train_rows:
            w.photo_pair(row, "training", high, low)
        # Trials and attention checks interleaved by the secret, so pair ids (in every URL)
        # do not single out the attention checks.
        for i in key.permutation(len(trial_rows) + len(checks)):
            if i < len(trial_rows):
                w.photo_pair(trial_rows[i][0], "trial", trial_rows[i][1], trial_rows[i][2])
            else:
                w.add("attention", *checks[i - len(trial_rows)])
        s.commit()
    return StudySummary(training=len(train_rows), trials=len(trial_rows), attention=len(checks),
                        dropped_missing_images=dropped, available=len(df),
                        dropped_unreadable_images=len(unreadable), unreadable=unreadable[:5])


def _draw(secret: bytes, *parts: object) -> int:
    digest = hmac.new(secret, "|".join(map(str, parts)).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def left_slot(secret: bytes, code: str, pair_id: int) -> str:
    """Which slot (a/b) this participant sees on the left for this pair."""
    return "a" if _draw(secret, code, pair_id, "side") % 2 == 0 else "b"


def trial_order(secret: bytes, code: str, pair_ids: list[int]) -> list[int]:
    """This participant's order of the trial and attention pairs."""
    ids = sorted(pair_ids)
    random.Random(_draw(secret, code, "order")).shuffle(ids)
    return ids
