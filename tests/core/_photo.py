"""Photo-like test pictures made here (smooth gradients, soft shapes, a little noise): the
core install has no scikit-image, and lossy codecs need something smoother than noise."""

from __future__ import annotations

import numpy as np
from PIL import Image


def synthetic_photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    tilt = rng.uniform(-0.6, 0.6, (2, 3))
    img = base + x[..., None] * tilt[0] + y[..., None] * tilt[1]
    for _ in range(3):  # soft discs of another colour
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 40)
        weight = np.clip(1.5 - np.hypot(x - cx, y - cy) / r, 0, 1)[..., None]
        img = img * (1 - weight) + rng.uniform(0, 255, 3) * weight
    img += rng.normal(0, 2, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
