"""PDIP builder and the pairs table format (see ``iipa.pairs.table``).

``build_pairs`` (build.py; Spark twin in spark.py) turns posts into pairs with the paper's
rules (``RuleConfig``, rules.py); ``read_authors_pairs`` imports the authors' released list;
``fetch_images`` downloads the images into an id-named folder.
"""

from iipa.pairs.authors import read_authors_pairs
from iipa.pairs.build import BuildResult, build_pairs
from iipa.pairs.fetch import fetch_images
from iipa.pairs.rules import RuleConfig
from iipa.pairs.table import PAIRS_COLUMNS, attach_images, read_pairs, write_pairs

__all__ = ["PAIRS_COLUMNS", "BuildResult", "RuleConfig", "attach_images", "build_pairs", "fetch_images",
           "read_authors_pairs", "read_pairs", "write_pairs"]
