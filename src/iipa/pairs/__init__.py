"""PDIP builder and the pairs table format (see ``iipa.pairs.table``)."""

from iipa.pairs.build import BuildResult, build_pairs
from iipa.pairs.rules import RuleConfig
from iipa.pairs.table import PAIRS_COLUMNS, attach_images, read_pairs, write_pairs

__all__ = ["PAIRS_COLUMNS", "BuildResult", "RuleConfig", "attach_images", "build_pairs", "read_pairs", "write_pairs"]
