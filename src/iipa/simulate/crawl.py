"""Simulated crawls on disk and in memory, lazy image rendering, agreement with the truth.

A crawl folder holds ``posts.parquet`` (the posts schema, as a real crawl would),
``truth.parquet`` (per post: true intrinsic popularity, image latents, every term of
the likes model) and ``simulation.json`` (the parameters and a summary). Images are not
part of it: :func:`render_images` draws them on demand, typically only for posts that
ended up in pairs, into an id-named folder the trainer reads (``<dir>/<post_id>.jpg``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from iipa.errors import IIPAError
from iipa.fileio import atomic_path
from iipa.pairs.schema import MEDIA_TYPES
from iipa.simulate.config import SimConfig, read_config, write_config
from iipa.simulate.network import POSTS_SCHEMA, TRUTH_SCHEMA, draw_users, iter_blocks
from iipa.simulate.render import render_image

POSTS_FILE, TRUTH_FILE, CONFIG_FILE = "posts.parquet", "truth.parquet", "simulation.json"


@dataclass(frozen=True)
class CrawlFiles:
    posts: Path
    truth: Path
    config: Path
    reused: bool = False        # write_crawl(reuse=True) found an identical crawl and kept it


def simulate(config: SimConfig | None = None, **overrides) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a crawl in memory: ``(posts, truth)`` DataFrames (for small and medium sizes).

    ``simulate(users=100, seed=3)`` is shorthand for ``simulate(SimConfig(users=100, seed=3))``.
    """
    cfg = config if config is not None else SimConfig(**overrides)
    if config is not None and overrides:
        cfg = SimConfig.from_dict({**config.to_dict(), **overrides})
    blocks = list(iter_blocks(cfg))
    posts = pa.concat_tables([p for p, _ in blocks]) if blocks else POSTS_SCHEMA.empty_table()
    truth = pa.concat_tables([t for _, t in blocks]) if blocks else TRUTH_SCHEMA.empty_table()
    return posts.to_pandas(), truth.to_pandas()


class _Summary:
    """Crawl statistics accumulated block by block (the Table 1 style numbers)."""

    def __init__(self) -> None:
        self.n = self.likes = self.no_tag = self.no_mention = self.no_caption = 0
        self.media = dict.fromkeys(MEDIA_TYPES, 0)
        self.users = 0

    def add(self, posts: pa.Table) -> None:
        self.n += posts.num_rows
        self.likes += int(pc.sum(posts["likes"]).as_py() or 0)
        self.no_tag += int(pc.sum(pc.equal(pc.list_value_length(posts["hashtags"]), 0)).as_py() or 0)
        self.no_mention += int(pc.sum(pc.equal(pc.list_value_length(posts["mentions"]), 0)).as_py() or 0)
        self.no_caption += int(pc.sum(pc.equal(posts["caption"], "")).as_py() or 0)
        self.users += len(pc.unique(posts["user_id"]))
        for m, c in zip(*np.unique(posts["media_type"].to_numpy(zero_copy_only=False), return_counts=True), strict=True):
            self.media[str(m)] += int(c)

    def to_dict(self, users: dict[str, np.ndarray]) -> dict:
        n = max(self.n, 1)
        return {
            "posts": self.n, "users_with_posts": self.users,
            "mean_likes": self.likes / n,
            "share_no_hashtag": self.no_tag / n, "share_no_mention": self.no_mention / n,
            "share_no_caption": self.no_caption / n,
            "media_share": {k: v / n for k, v in self.media.items()},
            "followers_median": float(np.median(users["followers"])),
            "followers_max": float(users["followers"].max()),
        }


def write_crawl(out_dir: str | os.PathLike, config: SimConfig, *, reuse: bool = False,
                progress: Callable[[int], None] | None = None) -> CrawlFiles:
    """Generate and write a crawl block by block (memory stays flat at any size).

    With ``reuse``, an existing crawl in ``out_dir`` made with the same parameters is kept
    as is (generation is deterministic, so it would come out identical).
    ``progress(n)`` is called with the number of posts written after each block.
    """
    out = Path(out_dir)
    files = CrawlFiles(out / POSTS_FILE, out / TRUTH_FILE, out / CONFIG_FILE)
    if reuse and files.posts.is_file() and files.truth.is_file() and files.config.is_file():
        try:
            if read_config(files.config) == config:
                return CrawlFiles(files.posts, files.truth, files.config, reused=True)
        except IIPAError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    users = draw_users(config)
    summary = _Summary()
    with atomic_path(files.posts) as tmp_posts, atomic_path(files.truth) as tmp_truth, \
            pq.ParquetWriter(tmp_posts, POSTS_SCHEMA) as wp, pq.ParquetWriter(tmp_truth, TRUTH_SCHEMA) as wt:
        for posts, truth in iter_blocks(config, users):
            wp.write_table(posts)
            wt.write_table(truth)
            summary.add(posts)
            if progress:
                progress(posts.num_rows)
    write_config(config, files.config, summary=summary.to_dict(users))
    return files


def read_truth(path: str | os.PathLike, *, post_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Read ``truth.parquet`` (or the crawl folder holding it), optionally only some posts."""
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE
    if not path.is_file():
        raise IIPAError(f"{path}: no such truth file (run `iipa simulate --out DIR` first)")
    try:
        if post_ids is None:
            table = pq.read_table(path)
        else:   # an explicit string value set, so that an empty list is not typed null
            import pyarrow.dataset as ds

            wanted = pa.array([str(i) for i in post_ids], pa.string())
            table = ds.dataset(path, format="parquet").to_table(filter=ds.field("post_id").isin(wanted))
    except Exception as exc:  # noqa: BLE001 - any reader error means a bad file
        raise IIPAError(f"{path}: cannot read truth table ({exc.__class__.__name__}: {exc})") from None
    missing = [c for c in ("post_id", "intrinsic") if c not in table.column_names]
    if missing:
        raise IIPAError(f"{path}: truth table lacks column(s) {', '.join(missing)}")
    return table.to_pandas()


def _truth_for(truth: pd.DataFrame | str | os.PathLike, ids: list[str]) -> pd.DataFrame:
    """Truth rows indexed by post_id for ``ids``; an unknown id is an error naming it."""
    rows = read_truth(truth, post_ids=ids) if not isinstance(truth, pd.DataFrame) else \
        truth[truth["post_id"].isin(ids)]
    rows = rows.drop_duplicates("post_id").set_index("post_id")
    unknown = [i for i in ids if i not in rows.index]
    if unknown:
        raise IIPAError(f"{len(unknown)} post id(s) not in the simulation's truth table, e.g. {unknown[:3]}")
    return rows


def render_post(post_id: str, truth: pd.DataFrame | str | os.PathLike, *, size: int = 224) -> Image.Image:
    """The image of one simulated post."""
    return render_image(_truth_for(truth, [str(post_id)]).loc[str(post_id)], size=size)


def render_images(post_ids: Iterable[str], truth: pd.DataFrame | str | os.PathLike, out_dir: str | os.PathLike,
                  *, size: int = 224, quality: int = 90,
                  progress: Callable[[int], None] | None = None) -> list[Path]:
    """Render ``<out_dir>/<post_id>.jpg`` for each distinct id, in first-seen order.

    A file already there at the requested size is kept (rendering is deterministic);
    files are written atomically, so an interrupted run leaves no half image.
    """
    ids = list(dict.fromkeys(str(i) for i in post_ids))
    rows = _truth_for(truth, ids)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid in ids:
        path = out / f"{pid}.jpg"
        if not _has_image(path, size):
            with atomic_path(path) as tmp:
                render_image(rows.loc[pid], size=size).save(tmp, format="JPEG", quality=quality)
        paths.append(path)
        if progress:
            progress(1)
    return paths


def _has_image(path: Path, size: int) -> bool:
    try:
        with Image.open(path) as im:
            return im.size == (size, size)
    except (OSError, ValueError):
        return False


def true_order_agreement(pairs: pd.DataFrame | str | os.PathLike,
                         truth: pd.DataFrame | str | os.PathLike) -> float:
    """Fraction of pairs whose ``high_id`` has the higher true intrinsic popularity.

    It measures how often PDIP labels (or a model's predicted order, passed as pairs)
    agree with the simulator's ground truth.
    """
    if not isinstance(pairs, pd.DataFrame):
        from iipa.pairs.table import read_pairs

        pairs = read_pairs(pairs)
    if not len(pairs):
        raise IIPAError("no pairs to compare with the true intrinsic order")
    ids = pd.unique(pd.concat([pairs["high_id"], pairs["low_id"]]).astype(str)).tolist()
    q = _truth_for(truth, ids)["intrinsic"]
    high = q.loc[pairs["high_id"].astype(str)].to_numpy()
    low = q.loc[pairs["low_id"].astype(str)].to_numpy()
    return float(np.mean(high > low))
