"""Real photos saved in the formats every scoring path must read the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_format_variants(d: Path, photos: dict[str, np.ndarray]) -> tuple[Image.Image, Image.Image, Image.Image]:
    """Write plain.jpg, plain.png, rotated.jpg (EXIF orientation 6) and cmyk.jpg into ``d``;
    returns the (chelsea, coffee, rocket) images for callers that add more files."""
    chelsea, coffee, rocket = (Image.fromarray(photos[n]) for n in ("chelsea", "coffee", "rocket"))
    chelsea.save(d / "plain.jpg", quality=90)
    coffee.save(d / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    rocket.save(d / "rotated.jpg", quality=90, exif=exif)
    coffee.convert("CMYK").save(d / "cmyk.jpg", quality=90)
    return chelsea, coffee, rocket
