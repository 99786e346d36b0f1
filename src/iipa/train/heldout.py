"""Which held-out accounts choose and which report: the default recipe's split of the pairs
table's validation and test accounts, and the rules the table was built with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def build_rules(pairs: str) -> dict[str, Any]:
    """The rules the pairs table was built with (its stats.json), else the paper's."""
    stats = Path(pairs).parent / "stats.json"
    if stats.is_file():
        try:
            return dict(json.loads(stats.read_text(encoding="utf-8")).get("rules") or {})
        except (ValueError, OSError):
            pass
    return {}


def split_held_out(table: pd.DataFrame, seed: int) -> tuple[set[str], set[str], str]:
    """(selection accounts, report accounts, where the report accounts come from). The pairs
    table's validation accounts choose the L2 and fit the temperature; its test accounts report.
    Without a test split the validation accounts are split in two by a seeded draw, so the
    reported figure still comes from accounts that chose nothing."""
    users = {k: set(table.loc[table["split"] == k, "user_id"].astype(str)) for k in ("val", "test")}
    if users["test"]:
        return users["val"] - users["test"], users["test"], "the test split of the pairs table"
    val = sorted(users["val"])
    if len(val) < 2:
        return set(val), set(), ""
    order = [val[i] for i in np.random.default_rng(seed).permutation(len(val))]
    half = len(order) // 2
    return set(order[half:]), set(order[:half]), f"{half} of the {len(val)} validation accounts, drawn with seed {seed}"
