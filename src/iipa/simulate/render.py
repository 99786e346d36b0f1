"""Synthetic photos whose intrinsic popularity is a function of what is visible.

Each post has image latent factors (stored in ``truth.parquet``). Four of them make a
photo intrinsically popular, after the paper's Fig. 6 (excellent images are vivid, crisp
and have a clear subject; poor ones are "empty backgrounds with few salient objects"):

============== ================================================== ======
latent         visible as                                          weight
============== ================================================== ======
colourfulness  saturation of every colour                          1.0
contrast       spread of the tones around the mean                  0.8
sharpness      box blur of radius (1 - sharpness) * 4.5 px @224   0.8
subject        size of a bright, saturated shape; 0 = empty scene   1.2
============== ================================================== ======

``intrinsic = (Σ weight · latent − mean) / std`` with the population mean and std, so
the truth is standardised and ``beta`` in the likes model is in log likes per std.
The other latents (background hue and brightness, subject hue, position and shape,
texture seed) are nuisance: they vary the pictures without changing their popularity, so
a model has to learn the four factors rather than, say, a colour.

Rendering depends only on the latents, so it is deterministic (same latents → same
pixels), and takes a few milliseconds at 224 px with numpy and PIL.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WEIGHTS = {"colourfulness": 1.0, "contrast": 0.8, "sharpness": 0.8, "subject": 1.2}
SUBJECT_RANGE = (0.2, 1.0)            # subject size when there is a subject
LATENT_COLUMNS = ("colourfulness", "contrast", "sharpness", "subject", "background_hue",
                  "background_value", "subject_hue", "subject_x", "subject_y", "shape", "texture_seed")
SHAPES = ("ellipse", "rectangle", "triangle")
MAX_BLUR_AT_224 = 4.5


def draw_latents(rng: np.random.Generator, n: int, *, p_empty: float) -> dict[str, np.ndarray]:
    """Latent factors of ``n`` images (the draw order is part of the seeded model)."""
    u = rng.random((8, n), dtype=np.float32)
    present = rng.random(n) >= p_empty
    subject = np.where(present, SUBJECT_RANGE[0] + (SUBJECT_RANGE[1] - SUBJECT_RANGE[0]) * u[3], 0.0)
    return {
        "colourfulness": u[0], "contrast": u[1], "sharpness": u[2],
        "subject": subject.astype(np.float32),
        "background_hue": u[4], "background_value": (0.35 + 0.4 * u[5]).astype(np.float32),
        "subject_hue": u[6], "subject_x": (0.35 + 0.3 * u[7]).astype(np.float32),
        "subject_y": (0.35 + 0.3 * rng.random(n, dtype=np.float32)).astype(np.float32),
        "shape": rng.integers(0, len(SHAPES), n, dtype=np.int8),
        "texture_seed": rng.integers(0, 2**32, n, dtype=np.int64),
    }


def intrinsic_moments(p_empty: float) -> tuple[float, float]:
    """Mean and std of the raw weighted sum over the latent population (analytic)."""
    a, b = SUBJECT_RANGE
    mean = sum(WEIGHTS[k] * 0.5 for k in ("colourfulness", "contrast", "sharpness"))
    var = sum(WEIGHTS[k] ** 2 / 12.0 for k in ("colourfulness", "contrast", "sharpness"))
    ez, ez2 = (1 - p_empty) * (a + b) / 2, (1 - p_empty) * (a * a + a * b + b * b) / 3
    mean += WEIGHTS["subject"] * ez
    var += WEIGHTS["subject"] ** 2 * (ez2 - ez * ez)
    return mean, float(np.sqrt(var))


def intrinsic_score(latents: Mapping[str, np.ndarray], *, p_empty: float) -> np.ndarray:
    """The true intrinsic popularity: standardised weighted sum of the visible factors."""
    raw = sum(WEIGHTS[k] * np.asarray(latents[k], dtype=np.float64) for k in WEIGHTS)
    mean, std = intrinsic_moments(p_empty)
    return ((raw - mean) / std).astype(np.float32)


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32)


def _subject_mask(shape: int, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = cx - radius, cy - radius, cx + radius, cy + radius
    if SHAPES[shape] == "ellipse":
        draw.ellipse((x0, y0 + radius * 0.15, x1, y1 - radius * 0.15), fill=255)
    elif SHAPES[shape] == "rectangle":
        draw.rounded_rectangle((x0, y0, x1, y1), radius=radius * 0.25, fill=255)
    else:
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=255)
    return np.asarray(mask, dtype=np.float32)[..., None] / 255.0


def render_image(latents: Mapping[str, float], *, size: int = 224) -> Image.Image:
    """Render one square RGB photo from its latents (a truth row, a dict or a Series)."""
    size = int(size)
    lat = {k: latents[k] for k in LATENT_COLUMNS}
    rng = np.random.default_rng(int(lat["texture_seed"]))
    hue, val = float(lat["background_hue"]), float(lat["background_value"])
    # background: a two-tone vertical gradient with soft blotches (sky, wall, table...)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    img = _rgb(hue, 0.7, val + 0.15) * (1 - t) + _rgb(hue + 0.08, 0.7, val - 0.15) * t
    blotch = Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    img = img * (0.85 + 0.3 * np.asarray(blotch, np.float32)[..., None] / 255.0)
    img = np.broadcast_to(img, (size, size, 3)).copy()
    subject = float(lat["subject"])
    if subject > 0:
        radius = size * (0.08 + 0.27 * subject)
        mask = _subject_mask(int(lat["shape"]), float(lat["subject_x"]) * size, float(lat["subject_y"]) * size,
                             radius, size)
        colour = _rgb(hue + 0.5 + (float(lat["subject_hue"]) - 0.5) * 0.4, 0.9, 0.95)
        shade = 0.8 + 0.2 * t[..., 0:1].swapaxes(0, 1)       # a little left-right shading
        img = img * (1 - mask) + colour * shade * mask
    # grain at a resolution-independent scale, so blur removes it at any size
    cell = max(1, size // 112)
    grain = rng.random(((size + cell - 1) // cell,) * 2, dtype=np.float32) * 0.17 - 0.085
    if cell > 1:
        grain = np.repeat(np.repeat(grain, cell, 0), cell, 1)[:size, :size]
    grain = grain[..., None]
    img = img + grain
    # the popularity factors: saturation, then contrast (one affine map), then blur.
    # Saturation keeps the luminance, so both use the same gray image:
    # out = m + cf * (gray + sf * (img - gray) - m) = cf*sf*img + cf*(1-sf)*gray + (1-cf)*m
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    sf = 0.05 + 1.15 * float(lat["colourfulness"])
    cf = 0.3 + 0.9 * float(lat["contrast"])
    img *= 255.0 * cf * sf
    img += (gray * (255.0 * cf * (1 - sf)) + (255.0 * (1 - cf) * float(gray.mean()) + 0.5))[..., None]
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    radius = (1.0 - float(lat["sharpness"])) * MAX_BLUR_AT_224 * size / 224.0
    if radius > 0.05:
        out = out.filter(ImageFilter.BoxBlur(radius))   # one box pass: 5x cheaper than Gaussian
    return out


def visible_statistics(img: Image.Image | np.ndarray) -> dict[str, float]:
    """Pixel statistics that track the popularity factors (for checks and reports).

    ``colourfulness``: Hasler & Süsstrunk (2003); ``contrast``: RMS contrast of the
    luminance in [0, 1]; ``sharpness``: log variance of the luminance Laplacian.
    """
    a = np.asarray(img, dtype=np.float32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    lum = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    lap = (lum[1:-1, :-2] + lum[1:-1, 2:] + lum[:-2, 1:-1] + lum[2:, 1:-1] - 4 * lum[1:-1, 1:-1])
    return {"colourfulness": colourfulness, "contrast": float(lum.std()),
            "sharpness": float(np.log(lap.var() + 1e-12))}
