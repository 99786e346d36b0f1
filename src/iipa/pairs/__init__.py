"""PDIP builder and the pairs table format (see ``iipa.pairs.table``).

``build_pairs`` (build.py; Spark twin in spark.py) turns posts into pairs with the paper's
rules (``RuleConfig``, rules.py); ``read_authors_pairs`` imports the authors' released list;
``fetch_images`` downloads the images into an id-named folder.
"""

from iipa._lazy import lazy_exports

# Lazy: the CLI reads configuration defaults without importing pandas and pyarrow.
_EXPORTS = {
    "read_authors_pairs": "iipa.pairs.authors",
    "BuildResult": "iipa.pairs.build",
    "build_pairs": "iipa.pairs.build",
    "fetch_images": "iipa.pairs.fetch",
    "RuleConfig": "iipa.pairs.rules",
    "PAIRS_COLUMNS": "iipa.pairs.table",
    "attach_images": "iipa.pairs.table",
    "read_pairs": "iipa.pairs.table",
    "write_pairs": "iipa.pairs.table",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
