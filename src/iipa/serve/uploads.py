"""Turn one uploaded file into a checked RGB image, or an :class:`ApiError` with its status.

Uploads are only ever bytes in memory: the client's file name is echoed back as a label
and never used to open, write or look up anything on disk.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from iipa.errors import ImageError
from iipa.images import open_image
from iipa.serve.settings import ServeSettings

# ImageError.reason -> HTTP status: a bomb is "too large", everything else a bad request.
_REASON_STATUS = {"decompression bomb": 413, "unsupported format": 415}


class ApiError(Exception):
    """An error answered as JSON ``{"error": ..., "detail": ...}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail}


@dataclass
class Upload:
    """One file of a multipart request; ``name`` is only a label."""

    name: str
    data: bytes


def safe_label(filename: str | None, index: int) -> str:
    """A printable label for an upload: the base name, trimmed; never a path we open."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or f"image-{index + 1}"


def check_size(upload: Upload, settings: ServeSettings) -> None:
    if len(upload.data) > settings.max_upload_bytes:
        raise ApiError(413, "file too large",
                       f"{upload.name}: {len(upload.data)} bytes > limit {settings.max_upload_bytes}")
    if not upload.data:
        raise ApiError(400, "empty file", f"{upload.name}: the upload has no bytes")


def decode(upload: Upload, settings: ServeSettings, *, draft_size: tuple[int, int] | None) -> Image.Image:
    """Sniff the format from the bytes (not the name or content type), check it and the
    pixel count before decoding, then decode with :func:`iipa.images.open_image`."""
    check_size(upload, settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as probe:
                fmt, (w, h) = probe.format, probe.size
    except UnidentifiedImageError:
        raise ApiError(400, "not an image", f"{upload.name}: no known image format in the bytes") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "too many pixels", f"{upload.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is the client's bytes
        raise ApiError(400, "undecodable image", f"{upload.name}: {exc.__class__.__name__}: {exc}") from None
    if fmt not in settings.allowed_formats:
        allowed = ", ".join(f for f in settings.allowed_formats if f != "MPO")
        raise ApiError(415, "format not allowed", f"{upload.name}: {fmt}; allowed: {allowed}")
    if w * h > settings.max_pixels:
        raise ApiError(413, "too many pixels", f"{upload.name}: {w}x{h} = {w * h} > limit {settings.max_pixels}")
    if max(w, h) > settings.max_aspect_ratio * max(1, min(w, h)):
        raise ApiError(400, "extreme aspect ratio",
                       f"{upload.name}: {w}x{h} is more than {settings.max_aspect_ratio:g}:1")
    try:
        return open_image(upload.data, draft_size=draft_size, max_pixels=settings.max_pixels)
    except ImageError as exc:
        detail = f"{upload.name}: {exc.reason}" + (f" ({exc.detail})" if exc.detail else "")
        raise ApiError(_REASON_STATUS.get(exc.reason, 400), "undecodable image", detail) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug on hostile bytes
        raise ApiError(400, "undecodable image", f"{upload.name}: {exc.__class__.__name__}: {exc}") from None
