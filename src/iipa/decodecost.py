"""What decoding an image will cost, read from its bytes before decoding anything.

Two costs a pixel count misses (issue 23):

- **Work.** A progressive JPEG is decoded scan by scan, each scan a pass over the whole
  coefficient buffer, however much it is drafted down: a 7000² JPEG padded with 20,000
  empty AC scans (0.8 MB) took 18.6 s. PNG data arrives in chunks that Pillow handles one
  by one in Python: a million empty IDAT chunks cost seconds, not pixels. So the JPEG
  markers and scans and the PNG chunks are counted by walking the file's structure (no
  decoding), and a file past :data:`MAX_JPEG_SCANS` / :data:`MAX_JPEG_MARKERS` /
  :func:`max_png_chunks` is refused.
- **Memory.** Peak bytes per pixel depend on the format and mode (a 16-bit grey PNG goes
  through wider intermediate arrays than an RGB JPEG; a progressive JPEG holds the whole
  image's DCT coefficients even when drafted). :func:`peak_bytes` estimates the peak from
  :data:`PEAK_BYTES_PER_PIXEL`, measured by ``benchmarks/decode_memory.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Encoders write 10 scans (libjpeg's progression) to ~20 (mozjpeg's optimised ones);
# 100 leaves room for any real file and bounds the passes over the coefficients.
MAX_JPEG_SCANS = 100
# A photo has tens of markers (APPn, DQT, DHT, SOF, SOS); every one before the first scan
# is parsed in Python by Pillow.
MAX_JPEG_MARKERS = 2_000
_JPEG_MARKER = re.compile(rb"\xff[\x01\xc0-\xcf\xd8-\xfe]")  # not stuffing (00), fill (ff) or RSTn
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_NO_LENGTH = frozenset({0x01, 0xD8})

# Peak RSS growth of ``open_image`` per decoded pixel, measured (benchmarks/decode_memory.py,
# 2000² images, December 2026: 4.5 JPEG RGB, 4.3 PNG RGB, 12.4 RGBA, 13.4 palette with
# transparency, 13.8 16-bit grey, 17.3 WebP RGB, 25.7 WebP RGBA...) and rounded up by about
# a fifth; keys are (format, Pillow mode). 32-bit "I" was not measured: 16-bit's, plus 2.
PEAK_BYTES_PER_PIXEL = {
    ("JPEG", "RGB"): 6, ("JPEG", "L"): 7, ("JPEG", "CMYK"): 11,
    ("PNG", "RGB"): 6, ("PNG", "RGBA"): 15, ("PNG", "L"): 7, ("PNG", "LA"): 20, ("PNG", "P"): 17,
    ("PNG", "1"): 7, ("PNG", "I;16"): 17, ("PNG", "I"): 19,
    ("WEBP", "RGB"): 21, ("WEBP", "RGBA"): 31,
}
# Modes not measured: the worst measured figure.
DEFAULT_PEAK_BYTES_PER_PIXEL = 31
# A progressive JPEG keeps 2 bytes per DCT coefficient for every component at full size.
COEFFICIENT_BYTES = 2


class DecodeWorkError(ValueError):
    """The file's structure asks for more decoding work than allowed."""


@dataclass(frozen=True)
class Structure:
    """What the structure walk found: JPEG scans and markers, PNG chunks."""

    scans: int = 0
    markers: int = 0
    progressive: bool = False
    chunks: int = 0


def jpeg_structure(data: bytes) -> Structure:
    """Count the markers and scans (SOS) of the first image in a JPEG stream, jumping over
    segment payloads by their length and over entropy-coded data with a regex (no decode)."""
    scans = markers = 0
    progressive = False
    pos = 2 if data[:2] == b"\xff\xd8" else 0
    while (m := _JPEG_MARKER.search(data, pos)) is not None:
        code = data[m.start() + 1]
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise DecodeWorkError(f"more than {MAX_JPEG_MARKERS} JPEG markers")
        if code == 0xD9:  # EOI: the end of the (first) image
            break
        pos = m.end()
        if code in _JPEG_NO_LENGTH:
            continue
        if code == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise DecodeWorkError(f"more than {MAX_JPEG_SCANS} JPEG scans (SOS markers)")
        progressive |= code in _JPEG_PROGRESSIVE
        pos += int.from_bytes(data[pos:pos + 2], "big")
    return Structure(scans=scans, markers=markers, progressive=progressive)


def max_png_chunks(nbytes: int) -> int:
    """Chunks allowed in a PNG of ``nbytes``: encoders write 8–64 KiB IDAT chunks, so one per
    4 KiB on top of 10,000 is generous for any real file."""
    return 10_000 + nbytes // 4096


def png_structure(data: bytes) -> Structure:
    """Count the chunks of a PNG (length + type + data + CRC each), up to IEND."""
    limit = max_png_chunks(len(data))
    chunks, pos = 0, 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        chunks += 1
        if chunks > limit:
            raise DecodeWorkError(f"more than {limit} PNG chunks in {len(data)} bytes")
        if kind == b"IEND":
            break
        pos += 12 + length
    return Structure(chunks=chunks)


def structure(data: bytes, fmt: str) -> Structure:
    """The structure of an encoded image of Pillow format ``fmt``; raises
    :class:`DecodeWorkError` past the limits. Formats without a walk give ``Structure()``."""
    if fmt in ("JPEG", "MPO"):
        return jpeg_structure(data)
    if fmt == "PNG":
        return png_structure(data)
    return Structure()


def peak_bytes(fmt: str, mode: str, full_size: tuple[int, int], decoded_size: tuple[int, int],
               found: Structure | None = None, *, bands: int = 3) -> int:
    """Estimated peak memory of decoding one image to RGB: decoded pixels times the
    measured bytes per pixel of its format and mode, plus, for a progressive JPEG, the
    full-size coefficient buffer (``bands`` components)."""
    fmt = "JPEG" if fmt == "MPO" else fmt
    mode = "I;16" if mode.startswith("I;16") else mode
    per_pixel = PEAK_BYTES_PER_PIXEL.get((fmt, mode), DEFAULT_PEAK_BYTES_PER_PIXEL)
    total = decoded_size[0] * decoded_size[1] * per_pixel
    if found is not None and found.progressive:
        total += full_size[0] * full_size[1] * bands * COEFFICIENT_BYTES
    return total
