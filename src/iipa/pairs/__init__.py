"""PDIP builder and the pairs table format (see ``iipa.pairs.table``)."""

from iipa.pairs.table import PAIRS_COLUMNS, attach_images, read_pairs, write_pairs

__all__ = ["PAIRS_COLUMNS", "attach_images", "read_pairs", "write_pairs"]
