"""A seeded synthetic social network with known intrinsic image popularity.

It writes a crawl in the posts schema (what a crawler of a real network would produce),
plus the truth a real crawl lacks: each post's intrinsic popularity, the latent factors
its image is rendered from, and every term of the likes model. The PDIP builder and the
trainer run on it unchanged; the truth then tells how often PDIP labels and trained
models get the intrinsic order right. See :mod:`iipa.simulate.network` for the likes
model and :mod:`iipa.simulate.render` for the images.

Example::

    from iipa.simulate import SimConfig, simulate, write_crawl, render_images
    posts, truth = simulate(SimConfig(users=50, seed=1))          # DataFrames in memory
    files = write_crawl("sim", SimConfig(users=10_000, seed=1))   # posts/truth.parquet + json
    render_images(pairs["high_id"], files.truth, "sim/images", size=224)
"""

from iipa.simulate.config import SimConfig, read_config
from iipa.simulate.crawl import (
    CrawlFiles,
    read_truth,
    render_images,
    render_post,
    simulate,
    true_order_agreement,
    write_crawl,
)
from iipa.simulate.network import EFFECT_COLUMNS, POSTS_SCHEMA, TRUTH_SCHEMA
from iipa.simulate.render import LATENT_COLUMNS, intrinsic_score, render_image, visible_statistics

__all__ = [
    "EFFECT_COLUMNS", "LATENT_COLUMNS", "POSTS_SCHEMA", "TRUTH_SCHEMA", "CrawlFiles", "SimConfig",
    "intrinsic_score", "read_config", "read_truth", "render_image", "render_images", "render_post",
    "simulate", "true_order_agreement", "visible_statistics", "write_crawl",
]
