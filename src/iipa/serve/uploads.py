"""Turn one uploaded file into a checked RGB image, or an :class:`ApiError` with its status.

An upload is bytes, or the spooled temporary file the multipart parser wrote (read only
when its image is decoded, so a waiting request holds no image bytes in memory). The
client's file name is echoed back as a label and never used to open, write or look up
anything on disk.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO, Any

from PIL import Image, UnidentifiedImageError

from iipa.decodecost import DecodeWorkError, peak_bytes, structure
from iipa.errors import ImageError
from iipa.images import open_image, register_heif_opener
from iipa.serve.settings import ServeSettings

# ImageError.reason -> HTTP status: a bomb is "too large", everything else a bad request.
_REASON_STATUS = {"decompression bomb": 413, "too large": 413, "too much decode work": 413,
                  "unsupported format": 415}


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
    """One file of a multipart request; ``name`` is only a label; ``data`` is the bytes or
    a seekable binary file holding them."""

    name: str
    data: bytes | IO[bytes]

    @property
    def size(self) -> int:
        if isinstance(self.data, (bytes, bytearray)):
            return len(self.data)
        self.data.seek(0, io.SEEK_END)
        return self.data.tell()

    def stream(self) -> IO[bytes]:
        if isinstance(self.data, (bytes, bytearray)):
            return io.BytesIO(self.data)
        self.data.seek(0)
        return self.data


def safe_label(filename: str | None, index: int) -> str:
    """A printable label for an upload: the base name, trimmed; never a path we open."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or f"image-{index + 1}"


def check_size(upload: Upload, settings: ServeSettings) -> None:
    size = upload.size
    if (problem := settings.policy.bytes_problem(size)) is not None:
        raise ApiError(413, "file too large", f"{upload.name}: {problem}")
    if not size:
        raise ApiError(400, "empty file", f"{upload.name}: the upload has no bytes")


def probe(upload: Upload, settings: ServeSettings, *, draft_size: tuple[int, int] | None) -> int:
    """Check size, format, pixel count, aspect ratio and decode work (JPEG scans, PNG chunks)
    from the header and structure alone (nothing is decoded), and return the bytes decoding
    it will need at its peak (:func:`iipa.decodecost.peak_bytes`; JPEGs at the draft scale
    ``draft_size`` asks for)."""
    check_size(upload, settings)
    register_heif_opener()  # HEIC uploads identify as HEIF (once per process; no-op without pillow-heif)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(upload.stream()) as img:
                fmt, mode, (w, h), bands = img.format, img.mode, img.size, len(img.getbands())
                if fmt in ("JPEG", "MPO") and draft_size is not None and w * h <= settings.max_pixels:
                    img.draft("RGB", draft_size)  # sets the decode size; decodes nothing
                decoded_size = img.size
    except UnidentifiedImageError:
        raise ApiError(400, "not an image", f"{upload.name}: no known image format in the bytes") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "too many pixels", f"{upload.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is the client's bytes
        raise ApiError(400, "undecodable image", f"{upload.name}: {exc.__class__.__name__}: {exc}") from None
    if fmt not in settings.allowed_formats:
        allowed = ", ".join(f for f in settings.allowed_formats if f != "MPO")
        raise ApiError(415, "format not allowed", f"{upload.name}: {fmt}; allowed: {allowed}")
    policy = settings.policy
    if (problem := policy.pixels_problem(w, h)) is not None:
        raise ApiError(413, "too many pixels", f"{upload.name}: {problem}")
    if (problem := policy.aspect_problem(w, h)) is not None:
        raise ApiError(400, "extreme aspect ratio", f"{upload.name}: {problem}")
    try:
        found = structure(upload.stream(), fmt, upload.size)
    except DecodeWorkError as exc:
        raise ApiError(413, "too much decode work", f"{upload.name}: {exc}") from None
    cost = peak_bytes(fmt, mode, (w, h), decoded_size, found, bands=bands)
    if cost > settings.decode_budget_bytes:
        raise ApiError(413, "too many pixels", f"{upload.name}: a {w}x{h} {fmt} ({mode}) needs about {cost} bytes "
                                               f"to decode > the decode budget {settings.decode_budget_bytes}")
    return cost


def decode(upload: Upload, settings: ServeSettings, *, draft_size: tuple[int, int] | None) -> Image.Image:
    """Sniff the format from the bytes (not the name or content type), check it and the
    pixel count before decoding (:func:`probe`), then decode with
    :func:`iipa.images.open_image`. Callers bound memory by holding the probed bytes
    of a :class:`~iipa.serve.memory.MemoryBudget` around this call."""
    probe(upload, settings, draft_size=draft_size)
    try:
        return open_image(upload.stream(), draft_size=draft_size, policy=settings.policy)
    except ImageError as exc:
        detail = f"{upload.name}: {exc.reason}" + (f" ({exc.detail})" if exc.detail else "")
        raise ApiError(_REASON_STATUS.get(exc.reason, 400), "undecodable image", detail) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug on hostile bytes
        raise ApiError(400, "undecodable image", f"{upload.name}: {exc.__class__.__name__}: {exc}") from None
