"""A seeded synthetic social network with known intrinsic image popularity.

It writes a crawl in the posts schema (what a crawler of a real network would produce),
plus the truth a real crawl lacks: each post's intrinsic popularity, the latent factors
its image is rendered from, and every term of the likes model. The PDIP builder and the
trainer run on it unchanged; the truth then tells how often PDIP labels and trained
models get the intrinsic order right. See :mod:`iipa.simulate.network` for the likes
model and :mod:`iipa.simulate.render` for the images.

Example::

    import pandas as pd
    from iipa.simulate import SimConfig, simulate, write_crawl, render_images
    posts, truth = simulate(SimConfig(users=50, seed=1))          # DataFrames in memory
    files = write_crawl("sim", SimConfig(users=10_000, seed=1))   # posts/truth.parquet + json
    pairs = pd.read_parquet("pdip/pairs.parquet")  # `iipa pairs build sim/posts.parquet --out pdip`
    render_images(pairs["high_id"], files.truth, "sim/images", size=224)
"""

from iipa._lazy import lazy_exports

# Lazy: the CLI reads configuration defaults without importing pandas and pyarrow.
_EXPORTS = {
    "iipa.simulate.config": "SimConfig read_config",
    "iipa.simulate.crawl": "CrawlFiles read_truth render_images render_post simulate true_order_agreement write_crawl",
    "iipa.simulate.network": "EFFECT_COLUMNS POSTS_SCHEMA TRUTH_SCHEMA",
    "iipa.simulate.render": "LATENT_COLUMNS intrinsic_score render_image visible_statistics",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
