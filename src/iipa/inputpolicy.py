"""The one input policy: how many bytes, pixels and how extreme an aspect ratio an image may
have, for ``iipa score``/``rank``/``compare`` (and every command that scores files), the HTTP
service and Spark's executors alike.

Kept free of numpy and PIL so that the command-line parsers can show the defaults without
importing an image library. Each limit is checked before anything is decoded: the byte size
from the file system (or the upload's length), pixels and aspect ratio from the header.
"""

from __future__ import annotations

from dataclasses import dataclass

# 64 MiB: a 100 MP JPEG at quality 95 is ~40 MB and a camera's 16-bit TIFF or PNG of 24 MP
# ~150 MB is no photo we score; a file past this is refused from its size alone, before a
# byte of it is read.
DEFAULT_MAX_BYTES = 64 * 2**20
# 100 megapixels: far above any camera photo we score (a 24 MP DSLR frame is 6000x4000),
# far below what fits in memory decoded (100 MP RGB is 300 MB).
DEFAULT_MAX_PIXELS = 100_000_000
# Short-side profiles scale the short side up to the input size: a 1 x 1,000,000 strip would
# become a 72 x 72,000,000 image. Phone panoramas are 4:1 to 10:1; no photo is near 20:1.
DEFAULT_MAX_ASPECT_RATIO = 20.0


@dataclass(frozen=True)
class InputPolicy:
    """Limits on one input image, each checked before decoding."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"max_bytes and max_pixels must be at least 1, got {self.max_bytes}, {self.max_pixels}")
        if not self.max_aspect_ratio >= 1:
            raise ValueError(f"max_aspect_ratio must be at least 1, got {self.max_aspect_ratio}")

    def bytes_problem(self, size: int) -> str | None:
        """Why a file of ``size`` bytes is refused, or None."""
        if size > self.max_bytes:
            return f"{size:,} bytes > the limit of {self.max_bytes:,}"
        return None

    def pixels_problem(self, width: int, height: int) -> str | None:
        """Why a ``width`` x ``height`` image is refused for its pixel count, or None."""
        if width * height > self.max_pixels:
            return f"{width}x{height} = {width * height} pixels > {self.max_pixels}"
        return None

    def aspect_problem(self, width: int, height: int) -> str | None:
        """Why a ``width`` x ``height`` image is refused for its shape, or None."""
        if max(width, height) > self.max_aspect_ratio * max(1, min(width, height)):
            return f"{width}x{height} is more than {self.max_aspect_ratio:g}:1"
        return None


DEFAULT_POLICY = InputPolicy()
