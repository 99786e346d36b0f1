"""Pairs that need no likes: a photo beats its own degraded copies and a flat frame.

Likes say little about image quality within one account (every photo of an account is
usually sharp), so a probe fitted on likes alone can rank a blurred copy or a thumbnail
blown back up *above* its original, and a black frame near the middle of the scale. As in
RankIQA (Liu, van de Weijer & Bagdanov, ICCV 2017), synthetic pairs whose order is known
without any label teach the head that direction: each chosen photo is paired with copies
that are blurred, darkened, over-compressed or down-and-up-scaled, and with flat frames.
Their weight in the loss is a recipe setting chosen so that accuracy on held-out accounts'
PDIPs does not drop (``benchmarks/real_photos_cv.py`` measures both).

The copies are written as files (PNG, JPEG for the compressed one), so the feature cache,
keyed by file content, handles them like any photo. Everything is seeded.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

from iipa.fileio import write_bytes
from iipa.images import open_image

KINDS = ("blur", "dark", "jpeg", "thumb")
FLAT_COLOURS = {"black": (0, 0, 0), "dark-grey": (40, 40, 40), "grey": (128, 128, 128), "white": (255, 255, 255),
                "beige": (220, 200, 170), "blue": (30, 60, 200)}


def degrade(img: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A degraded copy of ``img`` (RGB, same size). Strengths are drawn from ranges that a
    person sees at once: blur sigma 1-4 % of the short side, brightness x0.2-0.45, JPEG
    quality 5-15, a 48-96 px thumbnail scaled back up."""
    img = img.convert("RGB")
    w, h = img.size
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.01, 0.04) * min(w, h)))
    if kind == "dark":
        return ImageEnhance.Brightness(img).enhance(rng.uniform(0.2, 0.45))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(5, 15))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "thumb":
        side = rng.randint(48, 96)
        small = img.copy()
        small.thumbnail((side, side), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(KINDS)}")


def _encode(img: Image.Image, kind: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if kind == "jpeg":  # already carries its artefacts; a lossless container keeps them exact
        img.save(buf, "PNG")
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue(), ".png"


def write_degraded(paths: Sequence[str], out_dir: str | Path, *, per_image: int = 1, seed: int = 0,
                   kinds: Sequence[str] = KINDS) -> list[tuple[str, str, str]]:
    """Write ``per_image`` degraded copies of each photo in ``paths`` (kinds cycled, seeded)
    to ``out_dir``; returns (original path, copy path, kind) triples. Unreadable photos are
    left out (the feature cache reports them as it does any photo)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    triples = []
    for n, path in enumerate(paths):
        try:
            img = open_image(path)
        except Exception:  # noqa: BLE001 - an unreadable original simply gets no copies
            continue
        for j in range(per_image):
            kind = kinds[(n * per_image + j) % len(kinds)]
            data, ext = _encode(degrade(img, kind, rng), kind)
            target = out / f"{n:06d}-{j}-{kind}{ext}"
            if not target.is_file():
                write_bytes(target, data)
            triples.append((str(path), str(target), kind))
    return triples


def write_flat_frames(out_dir: str | Path, size: tuple[int, int] = (320, 320)) -> dict[str, str]:
    """Flat single-colour frames (black, greys, white, two colours) as PNG files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, colour in FLAT_COLOURS.items():
        target = out / f"flat-{name}.png"
        if not target.is_file():
            buf = io.BytesIO()
            Image.new("RGB", size, colour).save(buf, "PNG")
            write_bytes(target, buf.getvalue())
        paths[name] = str(target)
    return paths
