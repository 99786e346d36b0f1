"""What decoding an image will cost, read from its bytes before decoding anything.

Two costs a pixel count misses:

- **Work.** A progressive JPEG is decoded scan by scan, each scan a pass over the whole
  coefficient buffer, however much it is drafted down: a 7000² JPEG padded with 20,000
  empty AC scans (0.8 MB) took 18.6 s. PNG data arrives in chunks that Pillow handles one
  by one in Python: a million empty IDAT chunks cost seconds, not pixels. So the JPEG
  markers and scans, the pixels each scan passes over, and the PNG chunks are counted by
  walking the file's structure (no decoding, a bounded buffer at a time), and a file past
  :data:`MAX_JPEG_SCANS` / :data:`MAX_JPEG_SCAN_PIXELS` / :data:`MAX_JPEG_MARKERS` /
  :func:`max_png_chunks` is refused.
- **Memory.** Peak bytes per pixel depend on the format and mode (a 16-bit grey PNG goes
  through wider intermediate arrays than an RGB JPEG; a progressive JPEG holds the whole
  image's DCT coefficients even when drafted). :func:`peak_bytes` estimates the peak from
  :data:`PEAK_BYTES_PER_PIXEL`, measured by ``benchmarks/decode_memory.py``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import IO

# Encoders write 10 scans (libjpeg's progression) to ~20 (mozjpeg's optimised ones);
# 100 leaves room for any real file and bounds the per-scan set-up work of tiny images.
MAX_JPEG_SCANS = 100
# Each scan is a pass over the coefficients of the components it codes, at full size however
# much the image is drafted, so a few hundred empty scans make a cheap file cost seconds. The
# passes of all scans together (pixels of each scanned component, summed over the scans) are
# bounded: this is about a second of one core's decoding (benchmarks/decode_bombs.py), and
# above libjpeg's own 10-scan progression of a 100 MP photo without chroma subsampling
# (14 passes over its pixels: 1.4e9; 4:2:0, 8 passes).
MAX_JPEG_SCAN_PIXELS = 1_500_000_000
# A photo has tens of markers (APPn, DQT, DHT, SOF, SOS); every one before the first scan
# is parsed in Python by Pillow.
MAX_JPEG_MARKERS = 2_000
_JPEG_MARKER = re.compile(rb"\xff[\x01\xc0-\xcf\xd8-\xfe]")  # not stuffing (00), fill (ff) or RSTn
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
_JPEG_NO_LENGTH = frozenset({0x01, 0xD8})
# The structure walks read this much at a time: memory stays bounded whatever the file's size.
READ_CHUNK = 1 << 16

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

Source = bytes | bytearray | IO[bytes]


class DecodeWorkError(ValueError):
    """The file's structure asks for more decoding work than allowed."""


@dataclass(frozen=True)
class Structure:
    """What the structure walk found: JPEG scans, markers and scan passes (pixels of the
    components each scan codes, summed over the scans), PNG chunks."""

    scans: int = 0
    markers: int = 0
    progressive: bool = False
    chunks: int = 0
    scan_pixels: int = 0


class _Window:
    """Random access to a seekable binary stream through one buffer of about
    :data:`READ_CHUNK` bytes (offsets are from the stream's start)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.start, self.buf = fh, 0, b""

    def at(self, pos: int, n: int) -> tuple[bytes, int]:
        """The buffer and ``pos``'s offset in it, holding ``n`` bytes from ``pos`` unless the
        stream ends first."""
        if not (self.start <= pos and pos + n <= self.start + len(self.buf)):
            self.fh.seek(pos)
            self.buf, self.start = self.fh.read(max(n, READ_CHUNK)), pos
        return self.buf, pos - self.start

    def read(self, pos: int, n: int) -> bytes:
        buf, off = self.at(pos, n)
        return buf[off:off + n]

    def marker(self, pos: int) -> tuple[int, int] | None:
        """(offset, code) of the first JPEG marker at or after ``pos``, or None at the end."""
        while True:
            buf, off = self.at(pos, 2)
            if len(buf) - off < 2:
                return None
            if (m := _JPEG_MARKER.search(buf, off)) is not None:
                return self.start + m.start(), buf[m.start() + 1]
            pos = self.start + len(buf) - 1  # a marker may straddle the buffer's end


def _frame_components(payload: bytes) -> dict[int, int]:
    """Component id -> its pixels at full size, from an SOFn payload."""
    if len(payload) < 6:
        return {}
    height, width, count = int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big"), payload[5]
    specs = [payload[6 + 3 * i:9 + 3 * i] for i in range(count) if len(payload) >= 9 + 3 * i]
    if not specs:
        return {}
    hmax = max(max(s[1] >> 4 for s in specs), 1)
    vmax = max(max(s[1] & 15 for s in specs), 1)
    return {s[0]: math.ceil(width * (s[1] >> 4) / hmax) * math.ceil(height * (s[1] & 15) / vmax) for s in specs}


def jpeg_structure(source: Source) -> Structure:
    """Count the markers, scans (SOS) and scan passes of the first image in a JPEG stream,
    jumping over segment payloads by their length and over entropy-coded data with a regex
    (no decode), :data:`READ_CHUNK` bytes at a time."""
    win = _Window(_stream(source))
    scans = markers = scan_pixels = 0
    progressive = False
    components: dict[int, int] = {}
    pos = 2 if win.read(0, 2) == b"\xff\xd8" else 0
    while (found := win.marker(pos)) is not None:
        at, code = found
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise DecodeWorkError(f"more than {MAX_JPEG_MARKERS} JPEG markers")
        if code == 0xD9:  # EOI: the end of the (first) image
            break
        pos = at + 2
        if code in _JPEG_NO_LENGTH:
            continue
        length = int.from_bytes(win.read(pos, 2), "big")
        if code in _JPEG_FRAME:
            components = _frame_components(win.read(pos + 2, max(0, length - 2)))
        elif code == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise DecodeWorkError(f"more than {MAX_JPEG_SCANS} JPEG scans (SOS markers)")
            head = win.read(pos + 2, max(0, length - 2))
            scan_pixels += sum(components.get(c, 0) for c in head[1:1 + 2 * head[0]:2]) if head else 0
            if scan_pixels > MAX_JPEG_SCAN_PIXELS:
                raise DecodeWorkError(f"its first {scans} JPEG scans already pass over {scan_pixels:,} pixels "
                                      f"> {MAX_JPEG_SCAN_PIXELS:,} (about a second of decoding)")
        progressive |= code in _JPEG_PROGRESSIVE
        pos += length
    return Structure(scans=scans, markers=markers, progressive=progressive, scan_pixels=scan_pixels)


def max_png_chunks(nbytes: int) -> int:
    """Chunks allowed in a PNG of ``nbytes``: encoders write 8–64 KiB IDAT chunks, so one per
    4 KiB on top of 10,000 is generous for any real file."""
    return 10_000 + nbytes // 4096


def png_structure(source: Source, size: int | None = None) -> Structure:
    """Count the chunks of a PNG (length + type + data + CRC each), up to IEND. ``size``: the
    file's bytes (default: the stream's length), which sets :func:`max_png_chunks`."""
    fh = _stream(source)
    if size is None:
        size = fh.seek(0, io.SEEK_END)
    limit = max_png_chunks(size)
    win = _Window(fh)
    chunks, pos = 0, 8
    while len(head := win.read(pos, 8)) == 8:
        chunks += 1
        if chunks > limit:
            raise DecodeWorkError(f"more than {limit} PNG chunks in {size} bytes")
        if head[4:8] == b"IEND":
            break
        pos += 12 + int.from_bytes(head[:4], "big")
    return Structure(chunks=chunks)


def structure(source: Source, fmt: str, size: int | None = None) -> Structure:
    """The structure of an encoded image of Pillow format ``fmt`` (its bytes, or a seekable
    binary stream, read from its start and left where it was); raises
    :class:`DecodeWorkError` past the limits. Formats without a walk give ``Structure()``."""
    if fmt not in ("JPEG", "MPO", "PNG"):
        return Structure()
    fh = _stream(source)
    where = fh.tell()
    try:
        return jpeg_structure(fh) if fmt != "PNG" else png_structure(fh, size)
    finally:
        fh.seek(where)


def _stream(source: Source) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source


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
