"""Train/validation/test assignment of pairs, scaled like the paper and seeded.

The paper keeps 50,000 validation and 50,000 test pairs out of 2.5 million (2 % each) and
trains on the rest. By default we keep the same 2 % for smaller pair sets and cap each at
50,000 for larger ones; counts or fractions can be given instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from iipa.errors import IIPAError

PAPER_HELD_OUT = 50_000
PAPER_PAIRS = 2_500_000


def parse_size(text: str | float | int | None) -> float | int | None:
    """``"0.02"`` → a fraction, ``"5000"`` → a count, ``None`` → the paper's scaling."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise IIPAError(f"split size {text!r}: expected a count (e.g. 5000) or a fraction (e.g. 0.02)") from None
    if value < 0:
        raise IIPAError(f"split size {text!r} is negative")
    if value < 1:
        return value
    if value != int(value):
        raise IIPAError(f"split size {text!r}: a count must be a whole number")
    return int(value)


def held_out_count(n_pairs: int, size: float | int | None) -> int:
    """Number of pairs for one held-out split out of ``n_pairs``."""
    if size is None:
        n = min(PAPER_HELD_OUT, round(n_pairs * PAPER_HELD_OUT / PAPER_PAIRS))
        # A handful of pairs still gets one validation and one test pair.
        return max(n, 1) if n_pairs >= 3 else 0
    if isinstance(size, float) and size < 1:
        return round(n_pairs * size)
    return int(size)


def held_out_counts(n: int, *, val=None, test=None) -> tuple[int, int]:
    """(test pairs, validation pairs) out of ``n``; IIPAError when they exceed ``n``."""
    n_test, n_val = held_out_count(n, parse_size(test)), held_out_count(n, parse_size(val))
    if n_test + n_val > n:
        raise IIPAError(f"val ({n_val}) + test ({n_test}) pairs exceed the {n} pairs built")
    return n_test, n_val


def held_out_ranks(n: int, *, val=None, test=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, validation) pairs as ranks in (high_id, low_id) order, for ``n`` pairs: what
    :func:`assign_splits` assigns, for an engine that ranks its pairs itself."""
    n_test, n_val = held_out_counts(n, val=val, test=test)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test], perm[n_test:n_test + n_val]


def held_out_users(counts: np.ndarray, *, val=None, test=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, validation) users as indices into the users sorted by id, given each user's pair
    ``counts`` in that order: whole users, shuffled and filled into test, then val."""
    n_test, n_val = held_out_counts(int(np.sum(counts)), val=val, test=test)
    perm = np.random.default_rng(seed).permutation(len(counts))
    cum = np.cumsum(np.asarray(counts)[perm])
    n_test_users = int(np.searchsorted(cum, n_test, side="left")) + 1 if n_test else 0
    cum_val_start = cum[n_test_users - 1] if n_test_users else 0
    n_val_users = int(np.searchsorted(cum, cum_val_start + n_val, side="left")) + 1 - n_test_users if n_val else 0
    return perm[:n_test_users], perm[n_test_users:n_test_users + n_val_users]


def assign_splits(pairs: pd.DataFrame, *, val=None, test=None, seed: int = 0,
                  by_user: bool = False) -> pd.Series:
    """A ``split`` value per row of ``pairs`` (train | val | test), deterministic for a seed.

    The result does not depend on the row order of ``pairs``: rows are put in id order
    before the seeded shuffle. With ``by_user`` whole users go to one split (users are
    shuffled and filled into test, then val, until each reaches its count).
    """
    n = len(pairs)
    if not by_user:
        canon = np.lexsort((pairs["low_id"].to_numpy(str), pairs["high_id"].to_numpy(str)))
        test_ranks, val_ranks = held_out_ranks(n, val=val, test=test, seed=seed)
        split = np.full(n, "train", dtype=object)
        split[canon[test_ranks]] = "test"
        split[canon[val_ranks]] = "val"
        return pd.Series(split, index=pairs.index, name="split")
    users = pairs["user_id"].astype(str).to_numpy()
    uniq, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    test_users, val_users = held_out_users(counts, val=val, test=test, seed=seed)
    user_split = np.full(len(uniq), "train", dtype=object)
    user_split[test_users] = "test"
    user_split[val_users] = "val"
    return pd.Series(user_split[inverse], index=pairs.index, name="split")
