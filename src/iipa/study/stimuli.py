"""The images a participant sees, made once at ``iipa study init`` and kept in the study's
own database.

Both sides of every pair, attention checks included, are re-encoded the same way: upright,
cropped to a square from the centre, ``SIZE`` x ``SIZE`` pixels, baseline JPEG of quality
``QUALITY``, no metadata. The source files' format, size, EXIF and timestamps (the fetchers
write all more popular images first, so mtimes named the answer) never reach the browser.
The two sides of a pair are then padded to the same length with JPEG comment segments:
a JPEG-compressed source re-encodes larger than a lossless one of like content, so
Content-Length alone ordered 90% of the sides of a test study whose popular images were
PNG files and the others JPEG files.
"""

from __future__ import annotations

import io
import os

from PIL import Image, ImageDraw, ImageFont, ImageOps

from iipa.images import open_image

SIZE = 512
QUALITY = 90
MEDIA_TYPE = "image/jpeg"
# Attention checks: two photos, each with a banner; the banners differ in one word of four
# letters sharing three ("pick"/"skip"), so the banner's size and ink do not tell them
# apart: a reader follows the instruction, a bot has to read it.
ATTENTION_PICK = "Attention check: pick this image"
ATTENTION_SKIP = "Attention check: skip this image"


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # Fixed subsampling and no optimiser/progressive passes: every stimulus is encoded alike.
    img.save(buf, format="JPEG", quality=QUALITY, subsampling="4:2:0", optimize=False, progressive=False)
    return buf.getvalue()


def _square(path: str | os.PathLike) -> Image.Image:
    img = open_image(path, draft_size=(SIZE, SIZE))
    return ImageOps.fit(img, (SIZE, SIZE), Image.Resampling.LANCZOS)


def encode_photo(path: str | os.PathLike) -> bytes:
    """A photo as a stimulus; raises :class:`~iipa.errors.ImageError` when unreadable."""
    return _jpeg(_square(path))


def encode_instructions(path: str | os.PathLike, instructions: tuple[str, ...]) -> list[bytes]:
    """The photo once per instruction, written on a banner across its middle (the sides of
    attention checks); raises :class:`~iipa.errors.ImageError` when unreadable."""
    photo = _square(path).convert("RGB")
    font = ImageFont.load_default(size=SIZE // 17)
    out = []
    for instruction in instructions:
        img = photo.copy()
        draw = ImageDraw.Draw(img)
        left, top, right, bottom = draw.textbbox((0, 0), instruction, font=font)
        x, y = (SIZE - (right - left)) // 2 - left, (SIZE - (bottom - top)) // 2 - top
        pad = SIZE // 40
        draw.rectangle((0, y + top - pad, SIZE, y + bottom + pad), fill=(255, 255, 255))
        draw.text((x, y), instruction, fill=(0, 0, 0), font=font)
        out.append(_jpeg(img))
    return out


def _comment_segments(n: int) -> bytes:
    """``n`` (>= 4) bytes of JPEG COM segments (marker FFFE, 2-byte length, zero bytes)."""
    out = bytearray()
    while n:
        size = min(n, 65535 + 2)  # a segment's length field counts itself, not the marker
        if 0 < n - size < 4:
            size = n - 4
        out += b"\xff\xfe" + (size - 2).to_bytes(2, "big") + bytes(size - 4)
        n -= size
    return bytes(out)


def pad_to(data: bytes, length: int) -> bytes:
    """``data`` (a JPEG) grown to ``length`` bytes by comment segments after its SOI marker."""
    pad = length - len(data)
    if pad == 0:
        return data
    if pad < 4 or data[:2] != b"\xff\xd8":
        raise ValueError(f"cannot pad a {len(data)}-byte JPEG to {length} bytes")
    return data[:2] + _comment_segments(pad) + data[2:]


def equalise(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    """Both sides of a pair padded to one length, so Content-Length cannot tell them apart."""
    target = max(len(a), len(b))
    if any(0 < target - len(x) < 4 for x in (a, b)):
        target += 4
    return pad_to(a, target), pad_to(b, target)
