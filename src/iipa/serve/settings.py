"""Service limits in one typed place: the CLI builds one from its flags, tests build their own."""

from __future__ import annotations

from dataclasses import dataclass, field

from iipa.clientlimits import MIN_BODY_RATE, RATE_WINDOW_S
from iipa.inputpolicy import DEFAULT_POLICY, InputPolicy

# Formats a browser or phone actually uploads (HEIF: iPhones' HEIC photos, through
# pillow-heif, a core dependency); TIFF/BMP/GIF are accepted by ``iipa score`` but are rarely
# photos and make large, slow-to-decode uploads, so the service refuses them unless the
# operator asks for them.
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
# The smallest peak bytes per pixel of iipa.decodecost's table (an RGB JPEG or PNG).
MIN_BYTES_PER_PIXEL = 6


@dataclass(frozen=True)
class ServeSettings:
    """Everything that bounds what one client can make the service do.

    ``max_upload_bytes``, ``max_pixels`` and ``max_aspect_ratio`` are the one input policy
    (:mod:`iipa.inputpolicy`, :attr:`policy`), with its defaults, as ``iipa score`` applies it:
    bytes per image file, pixels (decompression bombs) and shape, checked before decoding. A
    whole request may carry ``max_files`` files (the body limit is their product plus
    multipart overhead, at most ``max_request_bytes``). Memory is bounded by a budget of bytes,
    estimated from the headers (pixels times the measured peak bytes per pixel of each
    format and mode, :mod:`iipa.decodecost`): one request may need at most
    ``max_request_decode_bytes`` in all (else 413), and all decodes and multipart bodies
    being parsed together hold at most ``decode_budget_bytes`` at once (the rest wait,
    within the request timeout); an image needing more than the whole budget is refused. A request body may not exceed
    ``max_request_bytes`` and must arrive within ``body_timeout_s``; a client must send a
    request's headers within ``header_timeout_s``. ``max_concurrency`` requests are processed
    at once and ``max_queue`` more may wait; beyond that, and past ``request_timeout_s``,
    clients get 503. Micro-batching gathers images from concurrent requests into one model
    call of at most ``max_batch_size`` images, waiting at most ``max_wait_ms`` for company.

    Bodies: a body must keep arriving at ``min_body_rate`` bytes/s, on average over each
    ``body_rate_window_s`` seconds spent waiting for it (else 408); one client
    address may have ``max_uploads_per_address`` multipart bodies arriving at once (else
    429); every multipart body byte in flight counts against ``upload_disk_bytes``, the
    room its spooled parts may take in the temporary folder (else 503).
    """

    max_upload_bytes: int = DEFAULT_POLICY.max_bytes
    max_files: int = 32
    max_pixels: int = DEFAULT_POLICY.max_pixels
    # One 50 MP RGBA PNG (15 bytes a pixel at its peak) at a time, or many smaller images.
    decode_budget_bytes: int = 800 * 2**20
    max_request_decode_bytes: int = 8 * 800 * 2**20
    max_request_bytes: int = 64 * 1024 * 1024
    body_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    max_aspect_ratio: float = DEFAULT_POLICY.max_aspect_ratio
    allowed_formats: tuple[str, ...] = DEFAULT_FORMATS
    request_timeout_s: float = 30.0
    max_concurrency: int = 32
    max_queue: int = 64
    batching: bool = True
    max_batch_size: int = 16
    max_wait_ms: float = 10.0
    min_body_rate: float = MIN_BODY_RATE
    body_rate_window_s: float = RATE_WINDOW_S
    max_uploads_per_address: int = 16
    upload_disk_bytes: int = 2 * 2**30
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_files", "max_pixels", "max_concurrency", "max_batch_size",
                     "max_request_decode_bytes", "decode_budget_bytes", "max_request_bytes",
                     "max_uploads_per_address", "upload_disk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decode_budget_bytes < self.max_pixels * MIN_BYTES_PER_PIXEL:
            raise ValueError(f"decode_budget_bytes ({self.decode_budget_bytes}) must be at least max_pixels x "
                             f"{MIN_BYTES_PER_PIXEL} ({self.max_pixels * MIN_BYTES_PER_PIXEL}), or the largest "
                             "allowed JPEG could never be decoded")
        if self.upload_disk_bytes < self.max_body_bytes:
            raise ValueError(f"upload_disk_bytes ({self.upload_disk_bytes}) must be at least the largest request body "
                             f"({self.max_body_bytes} bytes), or such a request could never be stored")
        if self.min_body_rate < 0:
            raise ValueError(f"min_body_rate must be >= 0 (0: off), got {self.min_body_rate}")
        if min(self.body_timeout_s, self.header_timeout_s, self.body_rate_window_s) <= 0:
            raise ValueError("body_timeout_s, header_timeout_s and body_rate_window_s must be > 0")
        if self.max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be at least 1, got {self.max_aspect_ratio}")
        if self.request_timeout_s <= 0 or self.max_wait_ms < 0 or self.max_queue < 0:
            raise ValueError("request_timeout_s must be > 0, max_wait_ms and max_queue >= 0")
        # MPO is how Pillow names multi-picture JPEGs from phones: a JPEG for our purposes.
        formats = tuple(f.upper() for f in self.allowed_formats)
        if "JPEG" in formats and "MPO" not in formats:
            formats += ("MPO",)
        object.__setattr__(self, "allowed_formats", formats)

    @property
    def policy(self) -> InputPolicy:
        """The input policy these settings apply to every uploaded image."""
        return InputPolicy(max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels,
                           max_aspect_ratio=self.max_aspect_ratio)

    @property
    def max_body_bytes(self) -> int:
        return min(self.max_request_bytes, self.max_upload_bytes * self.max_files + 64 * 1024)
