"""The paper's Table 1 for a pair database, as ``stats.json`` and Markdown.

Image-level figures (likes, hashtags, @, caption) are averaged over the images of the
pairs (two per pair); P and the upload interval over the pairs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.fileio import write_json, write_text

# (key, label, paper value, format)
TABLE1 = (
    ("pairs", "Number of PDIPs", 2.5e6, "{:,.0f}"),
    ("users", "Number of users involved", 1.1e5, "{:,.0f}"),
    ("avg_likes_per_image", "Average likes per image", 5.3e3, "{:,.1f}"),
    ("avg_p", "Average P(Q_A ≥ Q_B | S_A, S_B)", 0.978, "{:.3f}"),
    ("avg_interval_days", "Average upload time interval (days)", 4.8, "{:.2f}"),
    ("share_no_hashtag", "Proportion of no hashtag", 0.456, "{:.1%}"),
    ("share_no_mention", "Proportion of no @ sign", 0.479, "{:.1%}"),
    ("share_no_caption", "Proportion of no caption", 0.111, "{:.1%}"),
    ("avg_caption_words", "Average length of descriptive text (words)", 2.1, "{:.2f}"),
)

# Per-image columns an engine must deliver with each pair (suffix _high / _low).
IMAGE_COLUMNS = ("likes", "n_hashtags", "n_mentions", "n_words", "no_caption")


def table1(pairs: pd.DataFrame) -> dict[str, float | int | None]:
    """Table 1 from a wide pairs frame (pairs columns + IMAGE_COLUMNS for high and low)."""
    n = len(pairs)
    if n == 0:
        return {key: (0 if key in ("pairs", "users") else None) for key, *_ in TABLE1}

    def both(col: str) -> np.ndarray:
        return np.concatenate([pairs[f"{col}_high"].to_numpy(np.float64), pairs[f"{col}_low"].to_numpy(np.float64)])

    return {
        "pairs": int(n),
        "users": int(pairs["user_id"].nunique()),
        "avg_likes_per_image": float(both("likes").mean()),
        "avg_p": float(pairs["p"].mean()),
        "avg_interval_days": float(pairs["delta_t_days"].mean()),
        "share_no_hashtag": float((both("n_hashtags") == 0).mean()),
        "share_no_mention": float((both("n_mentions") == 0).mean()),
        "share_no_caption": float(both("no_caption").mean()),
        "avg_caption_words": float(both("n_words").mean()),
    }


def table1_markdown(t1: dict) -> str:
    """Table 1 as a Markdown table next to the paper's values."""
    lines = ["| Attribute | This database | Paper (Instagram) |", "| --- | ---: | ---: |"]
    for key, label, paper, fmt in TABLE1:
        value = t1.get(key)
        cell = label.replace("|", "\\|")  # the P label holds a pipe
        lines.append(f"| {cell} | {'—' if value is None else fmt.format(value)} | {fmt.format(paper)} |")
    return "\n".join(lines) + "\n"


def stats_markdown(stats: dict) -> str:
    """The whole build report: Table 1, splits, and where the posts went."""
    out = ["# PDIP database statistics", "", table1_markdown(stats["table1"])]
    if stats.get("splits"):
        out += ["## Splits", "", "| split | pairs |", "| --- | ---: |"]
        out += [f"| {k} | {v:,} |" for k, v in stats["splits"].items()] + [""]
    posts = stats.get("posts")
    if posts:
        out += ["## Posts", "", f"- rows read: {posts['rows']:,}", f"- valid: {posts['valid']:,}",
                f"- rejected: {posts['rejected_total']:,}"]
        out += [f"  - {reason}: {n:,}" for reason, n in posts["rejected"].items()]
    if stats.get("warnings"):
        out += ["", "## Warnings", ""] + [f"- {w}" for w in stats["warnings"]]
    funnel = stats.get("funnel")
    if funnel:
        out += ["", "## Rules", ""] + [f"- {k.replace('_', ' ')}: {v:,}" for k, v in funnel.items()]
    return "\n".join(out) + "\n"


def write_stats(stats: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``stats.json`` and ``stats.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    return write_json(out_dir / "stats.json", stats), write_text(out_dir / "stats.md", stats_markdown(stats))
