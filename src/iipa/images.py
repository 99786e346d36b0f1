"""Safe image opening: formats, modes, EXIF orientation, truncation and bombs.

Every failure becomes an :class:`~iipa.errors.ImageError` whose ``reason`` is one of
``not found``, ``unreadable``, ``empty file``, ``too large`` (more bytes than the input
policy allows, :mod:`iipa.inputpolicy`; decided from the file's size before reading it),
``not an image``, ``unsupported format``, ``truncated``, ``decompression bomb`` (too many
pixels), ``extreme aspect ratio``, ``too much decode work`` (:mod:`iipa.decodecost`: too many
JPEG scans, scan passes or markers, too many PNG chunks) or ``corrupt``, so a batch can report
it per file and go on with the rest. Nothing reads a whole file before these checks: the
structure walk reads a bounded buffer at a time, and decoding reads what the decoder asks.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from iipa.decodecost import DecodeWorkError, structure
from iipa.errors import ImageError

# DEFAULT_MAX_PIXELS: re-exported, callers import it from here.
from iipa.inputpolicy import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from iipa.inputpolicy import DEFAULT_POLICY, InputPolicy

# Pillow must not silently pad truncated files with grey: a truncated upload is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                    ".heic", ".heif", ".hif", ".avif")
# HEIF: phones' HEIC photos, through pillow-heif's opener; AVIF: Pillow's own plugin, where its
# build has libavif (PyPI's recent wheels do: PIL.features.check("avif")).
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"})
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")

# str | os.PathLike | bytes | PIL.Image.Image | numpy.ndarray | a binary file object
ImageInput = Any


def describe(source: ImageInput) -> str:
    """A short name for an input, used in error messages and output rows."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        return f"<PIL image {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))}>"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def open_image(
    source: ImageInput,
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    policy: InputPolicy = DEFAULT_POLICY,
) -> Image.Image:
    """Open ``source`` as an 8-bit RGB image, upright according to its EXIF orientation.

    ``draft_size`` lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while keeping both
    sides at least that large (several times faster on large photos). Transparent
    images are composited on white, 16-bit images are scaled to 8 bits, animated
    images give their first frame. ``policy`` bounds bytes, pixels and aspect ratio
    (``max_pixels``, when given, replaces its pixel limit).
    """
    if max_pixels is not None:
        policy = replace(policy, max_pixels=max_pixels)
    name = describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name)
    if isinstance(source, Image.Image):
        _check_shape(source, name, policy)
        return to_rgb(upright(source))
    heif = register_heif_opener()
    fp, size = _open_stream(source, name, policy)
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and 2x; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(fp)
            except UnidentifiedImageError:
                if not heif and name.lower().endswith(HEIF_EXTENSIONS):
                    raise ImageError(name, "unsupported format", "HEIC/HEIF needs pillow-heif (a core dependency of "
                                     "iipa): pip install pillow-heif") from None
                raise ImageError(name, "not an image", "no known image format") from None
            except Image.DecompressionBombError as exc:
                raise ImageError(name, "decompression bomb", str(exc)) from None
            except (OSError, SyntaxError, ValueError, EOFError) as exc:  # e.g. cut inside the header
                raise _decode_error(name, exc) from None
        if img.format not in ALLOWED_FORMATS:
            raise ImageError(name, "unsupported format", f"{img.format}")
        _check_shape(img, name, policy)
        _check_work(img, name, size)
        if draft_size is not None and img.format in ("JPEG", "MPO"):
            img.draft("RGB", draft_size)
        try:
            img.seek(0)
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _decode_error(name, exc) from None
        try:
            img = upright(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
            pass
        return to_rgb(img)
    finally:
        if not isinstance(source, (bytes, bytearray)) and hasattr(fp, "close") and fp is not source:
            fp.close()


@cache
def register_heif_opener() -> bool:
    """Teach Pillow to open HEIC/HEIF once per process; False when pillow-heif is missing."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _check_work(img: Image.Image, name: str, size: int | None) -> None:
    """Refuse a file whose structure asks for pathological decode work (before decoding;
    the walk reads a bounded buffer at a time and leaves the stream where it was)."""
    if img.format not in ("JPEG", "MPO", "PNG") or img.fp is None:
        return
    try:
        structure(img.fp, img.format, size)
    except DecodeWorkError as exc:
        raise ImageError(name, "too much decode work", str(exc)) from None


def _decode_error(name: str, exc: BaseException) -> ImageError:
    """Pillow says "image file is truncated" while decoding but "Truncated File Read" in a
    header: match case-insensitively, or a cut-off file would be called corrupt."""
    text = str(exc)
    reason = "truncated" if "truncated" in text.lower() or isinstance(exc, EOFError) else "corrupt"
    return ImageError(name, reason, text)


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says; ``img`` itself when it needs no turn
    (``ImageOps.exif_transpose`` would copy it: a full-size copy per photo)."""
    if img.getexif().get(0x0112, 1) in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _open_stream(source: ImageInput, name: str, policy: InputPolicy) -> tuple[Any, int | None]:
    """(a binary stream, its size in bytes or None when it cannot be told); a source over
    the policy's byte limit is refused from its size, before it is opened or read."""
    if isinstance(source, (bytes, bytearray)):
        _check_bytes(len(source), name, policy)
        return io.BytesIO(source), len(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if path.is_dir():
                listable = os.access(path, os.R_OK | os.X_OK)
                raise ImageError(name, "unreadable", "is a directory" if listable
                                 else "a folder that cannot be listed (permission denied)")
            if not path.is_file():  # a FIFO or a device: its size says nothing, reading may never end
                raise ImageError(name, "unreadable", "not a regular file")
            _check_bytes(size, name, policy)
            return open(path, "rb"), size  # noqa: SIM115 - closed by open_image
        except FileNotFoundError:
            raise ImageError(name, "not found") from None
        except PermissionError:
            raise ImageError(name, "unreadable", "permission denied") from None
        except IsADirectoryError:
            raise ImageError(name, "unreadable", "is a directory") from None
        except OSError as exc:
            raise ImageError(name, "unreadable", str(exc)) from None
    if hasattr(source, "read"):
        size = _stream_size(source)
        if size is not None:
            _check_bytes(size, name, policy)
        return source, size
    raise ImageError(name, "not an image", f"unsupported input type {type(source).__name__}")


def _stream_size(fh: Any) -> int | None:
    """Bytes from a seekable stream's position to its end (None when it cannot seek)."""
    try:
        if not fh.seekable():
            return None
        here = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


def _check_bytes(size: int, name: str, policy: InputPolicy) -> None:
    if size == 0:
        raise ImageError(name, "empty file")
    if (problem := policy.bytes_problem(size)) is not None:
        raise ImageError(name, "too large", problem)


def _check_shape(img: Image.Image, name: str, policy: InputPolicy) -> None:
    if (problem := policy.pixels_problem(img.width, img.height)) is not None:
        raise ImageError(name, "decompression bomb", problem)
    if (problem := policy.aspect_problem(img.width, img.height)) is not None:
        raise ImageError(name, "extreme aspect ratio", problem)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        # Composited in place: two full-size copies fewer at the peak (the service budgets
        # decoded pixels by this peak, see iipa.serve.memory).
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(img)
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float images to 8-bit, a stripe of rows at a time: whole-image
    float64 arrays peaked at 26 bytes a pixel (a 7000² 16-bit PNG: 1.3 GB); stripes keep
    the peak near the source, the 8-bit result and its RGB copy (benchmarks/decode_memory.py)."""
    low, high = img.getextrema()
    divide = img.mode.startswith("I;16") or (img.mode == "I" and high > 255)
    multiply = img.mode == "F" and high <= 1.0
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    rows = max(1, (1 << 20) // max(1, w))  # about a million pixels a stripe
    for top in range(0, h, rows):
        arr = np.asarray(img.crop((0, top, w, min(h, top + rows))), dtype=np.float64)
        if divide:
            arr /= 257.0
        elif multiply:
            arr *= 255.0
        out[top:top + rows] = np.clip(np.rint(arr), 0, 255)
    return Image.fromarray(out, "L").convert("RGB")


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(name, "not an image", "expected an HxW, HxWx3 or HxWx4 array")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        elif arr.dtype == np.uint16:
            arr = arr / 257.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode))


def image_path_for(images_dir: str | os.PathLike, post_id: str) -> Path | None:
    """The cached image of ``post_id`` in an id-named image folder, or None if absent.

    The fetcher writes ``<dir>/<post_id>.<ext>``; any of :data:`IMAGE_EXTENSIONS` is found.
    """
    base = Path(images_dir)
    for ext in IMAGE_EXTENSIONS:
        candidate = base / f"{post_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def is_image_name(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)
