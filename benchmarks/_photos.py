"""Realistic test photos for the benchmarks: scikit-image photographs, randomly cropped,
flipped and colour-jittered, upscaled to Instagram's 1080x1080 and saved as quality-90 JPEGs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance

SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def jpeg_photos(n: int, size: int = 1080, seed: int = 0) -> list[bytes]:
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in SOURCES]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        photo = img.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BICUBIC)
        if rng.random() < 0.5:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
        photo = ImageEnhance.Color(photo).enhance(rng.uniform(0.5, 1.5))
        photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.7, 1.3))
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out
