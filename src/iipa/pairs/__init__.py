"""PDIP builder and the pairs table format (see ``iipa.pairs.table``).

``build_pairs`` (build.py; Spark twin in spark.py) turns posts into pairs with the paper's
rules (``RuleConfig``, rules.py); ``read_authors_pairs`` imports the authors' released list;
``fetch_images`` downloads the images into an id-named folder.
"""

from iipa._lazy import lazy_exports

# Lazy: the CLI reads configuration defaults without importing pandas and pyarrow.
_EXPORTS = {
    "iipa.pairs.authors": "read_authors_pairs",
    "iipa.pairs.build": "BuildResult build_pairs",
    "iipa.pairs.fetch": "fetch_images",
    "iipa.pairs.rules": "RuleConfig",
    "iipa.pairs.table": "PAIRS_COLUMNS attach_images read_pairs write_pairs",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
