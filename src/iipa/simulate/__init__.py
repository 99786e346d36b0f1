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

from iipa._lazy import lazy_exports

# Lazy: the CLI reads configuration defaults without importing pandas and pyarrow.
_EXPORTS = {
    "SimConfig": "iipa.simulate.config",
    "read_config": "iipa.simulate.config",
    "CrawlFiles": "iipa.simulate.crawl",
    "read_truth": "iipa.simulate.crawl",
    "render_images": "iipa.simulate.crawl",
    "render_post": "iipa.simulate.crawl",
    "simulate": "iipa.simulate.crawl",
    "true_order_agreement": "iipa.simulate.crawl",
    "write_crawl": "iipa.simulate.crawl",
    "EFFECT_COLUMNS": "iipa.simulate.network",
    "POSTS_SCHEMA": "iipa.simulate.network",
    "TRUTH_SCHEMA": "iipa.simulate.network",
    "LATENT_COLUMNS": "iipa.simulate.render",
    "intrinsic_score": "iipa.simulate.render",
    "render_image": "iipa.simulate.render",
    "visible_statistics": "iipa.simulate.render",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
