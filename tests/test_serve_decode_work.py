"""The decode-work budget: JPEG scans, scan passes (scans x pixels) and markers and PNG
chunks are counted from the file's structure, a bounded buffer at a time, and a pathological
file is refused before decoding, by ``iipa score`` (a per-item error) and by the service (413
with the reason); memory is estimated by format and mode; one input policy (bytes, pixels,
aspect ratio) for the command line, the service and Spark."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from iipa.decodecost import (
    MAX_JPEG_SCAN_PIXELS,
    MAX_JPEG_SCANS,
    READ_CHUNK,
    DecodeWorkError,
    jpeg_structure,
    peak_bytes,
    png_structure,
    structure,
)
from iipa.errors import ImageError
from iipa.images import open_image
from iipa.inputpolicy import DEFAULT_MAX_PIXELS, DEFAULT_POLICY, InputPolicy
from iipa.serve import ServeSettings, create_app


def _photo(side: int = 64, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    ramp = (np.add.outer(np.arange(side), np.arange(side)) * 2 % 256).astype(np.uint8)
    arr = np.stack([ramp, ramp[::-1], ramp.T], axis=2) + rng.integers(0, 8, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def jpeg(progressive: bool) -> bytes:
    buf = io.BytesIO()
    _photo().save(buf, "JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


def scan_padded_jpeg(extra_scans: int) -> bytes:
    """A progressive JPEG whose last scan (header and entropy-coded data) is repeated:
    the structure of the issue's 20,000-scan file, in a small size."""
    data = jpeg(progressive=True)
    last_sos, eoi = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:eoi] + data[last_sos:eoi] * extra_scans + data[eoi:]


def chunked_png(chunk_size: int) -> bytes:
    """A valid PNG whose image data is split into IDAT chunks of ``chunk_size`` bytes."""
    buf = io.BytesIO()
    _photo(128).save(buf, "PNG")
    data = buf.getvalue()
    pos, idat, head, tail = 8, b"", None, None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            head = head if head is not None else data[:pos]
            idat += data[pos + 8:pos + 8 + length]
        elif kind == b"IEND":
            tail = data[pos:]
        pos += 12 + length

    def chunk(payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))

    return head + b"".join(chunk(idat[i:i + chunk_size]) for i in range(0, len(idat), chunk_size)) + tail


def test_real_files_pass_with_their_structure_counted():
    baseline, progressive = jpeg_structure(jpeg(False)), jpeg_structure(jpeg(True))
    assert baseline.scans == 1 and not baseline.progressive
    assert progressive.progressive and 2 <= progressive.scans <= 12
    assert png_structure(chunked_png(8192)).chunks >= 3  # IHDR, IDAT..., IEND
    open_image(chunked_png(1024))  # many chunks, but a sane number for its size


def test_a_jpeg_padded_with_scans_is_refused_before_decoding():
    assert jpeg_structure(scan_padded_jpeg(MAX_JPEG_SCANS - 20)).scans <= MAX_JPEG_SCANS
    open_image(scan_padded_jpeg(MAX_JPEG_SCANS - 20))  # under the limit: decodes
    bomb = scan_padded_jpeg(20_000)
    with pytest.raises(ImageError) as err:
        open_image(bomb, draft_size=(224, 224))
    assert err.value.reason == "too much decode work" and "scans" in str(err.value)


def test_a_png_of_tiny_chunks_is_refused():
    data = chunked_png(1)
    with pytest.raises(ImageError) as err:
        open_image(data)
    assert err.value.reason == "too much decode work" and "PNG chunks" in str(err.value)
    assert structure(data[:8], "PNG").chunks == 0


def test_score_reports_the_refused_file_and_scores_the_rest(run_cli, tiny_checkpoint, tmp_path):
    (tmp_path / "bomb.jpg").write_bytes(scan_padded_jpeg(20_000))
    (tmp_path / "fine.jpg").write_bytes(jpeg(True))
    code, out, err = run_cli("score", tmp_path, "--model", tiny_checkpoint, "-f", "csv")
    assert code == 1, err
    assert "bomb.jpg: too much decode work" in err and "fine.jpg" in out


def test_the_service_answers_413_with_the_reason(tiny_checkpoint):
    with TestClient(create_app(tiny_checkpoint, ServeSettings())) as c:
        r = c.post("/v1/score", files=[("files", ("bomb.jpg", scan_padded_jpeg(20_000), "image/jpeg"))])
        assert r.status_code == 413 and r.json()["error"] == "too much decode work", r.text
        assert "scans" in r.json()["detail"]
        r = c.post("/v1/score", files=[("files", ("tiny-chunks.png", chunked_png(1), "image/png"))])
        assert r.status_code == 413 and "PNG chunks" in r.json()["detail"], r.text
        r = c.post("/v1/score", files=[("files", ("fine.jpg", jpeg(True), "image/jpeg"))])
        assert r.status_code == 200 and r.json()["results"][0]["score"] is not None


def test_memory_estimate_follows_format_mode_and_progressive_coefficients():
    full, drafted = (7000, 7000), (875, 875)
    baseline = peak_bytes("JPEG", "RGB", full, drafted)
    progressive = peak_bytes("JPEG", "RGB", full, drafted, jpeg_structure(jpeg(True)))
    assert progressive - baseline == 7000 * 7000 * 3 * 2  # full-size coefficients, drafted or not
    assert peak_bytes("PNG", "I;16B", full, full) > peak_bytes("PNG", "RGB", full, full)
    assert peak_bytes("PNG", "RGBA", full, full) == 7000 * 7000 * 15


def claiming(data: bytes, side: int) -> bytes:
    """The same progressive JPEG with its frame header (SOF2) claiming ``side`` x ``side``
    pixels: what the structure walk sees of a large photo, in a few kilobytes."""
    at = data.index(b"\xff\xc2")
    return data[:at + 5] + side.to_bytes(2, "big") * 2 + data[at + 9:]


def test_scans_times_pixels_refuse_a_large_jpeg_of_many_scans():
    """100 scans are allowed on a small image, and a real 10-scan progression on a 7000²
    one, but not 100 scans over 7000² pixels (seconds of decoding, whatever the draft)."""
    small = scan_padded_jpeg(90)
    found = jpeg_structure(small)
    assert found.scans == 100 and found.scan_pixels <= 100 * 64 * 64
    real = jpeg_structure(claiming(jpeg(True), 7000))  # libjpeg's progression: 8 passes with 4:2:0
    assert real.scans < 15 and 7 * 7000**2 <= real.scan_pixels <= 14 * 7000**2 < MAX_JPEG_SCAN_PIXELS
    bomb = claiming(small, 7000)
    assert 49_000_000 <= DEFAULT_MAX_PIXELS  # not refused for its pixels: for its scans
    with pytest.raises(DecodeWorkError, match="pass over"):
        jpeg_structure(bomb)
    with pytest.raises(ImageError) as err:
        open_image(bomb, draft_size=(224, 224))
    assert err.value.reason == "too much decode work"


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_the_structure_walk_reads_a_bounded_buffer(monkeypatch):
    """A JPEG followed by zeros is walked up to its end (EOI), not read whole, and a
    marker cut by the buffer's edge is still found; a PNG's chunk limit comes from the
    size it is given, not from bytes read into memory."""
    data = jpeg(True)
    stream = CountingStream(data + bytes(40 * READ_CHUNK))
    assert jpeg_structure(stream) == jpeg_structure(data)
    assert stream.bytes_read <= len(data) + 2 * READ_CHUNK
    monkeypatch.setattr("iipa.decodecost.READ_CHUNK", 7)  # markers straddle every buffer's edge
    assert jpeg_structure(CountingStream(data)) == jpeg_structure(data)
    monkeypatch.undo()
    tiny_chunks = chunked_png(1)
    with pytest.raises(DecodeWorkError):
        png_structure(io.BytesIO(tiny_chunks))
    assert png_structure(io.BytesIO(tiny_chunks), size=10**12).chunks > 10_000  # a limit for 1 TB
    stream = io.BytesIO(data)
    stream.seek(5)
    structure(stream, "JPEG")
    assert stream.tell() == 5  # left where it was (Pillow reads on from there)


def test_one_input_policy_for_the_cli_the_service_and_spark():
    from iipa.cli import build_parser
    from iipa.spark.partition import PartitionOptions

    assert ServeSettings().policy == DEFAULT_POLICY == InputPolicy()
    for command in (["score", "x.jpg"], ["rank", "x.jpg"], ["compare", "a.jpg", "b.jpg"]):
        args = build_parser().parse_args(command)
        assert (args.max_bytes, args.max_pixels) == (DEFAULT_POLICY.max_bytes, DEFAULT_POLICY.max_pixels)
    options = PartitionOptions()
    assert (options.max_bytes, options.max_pixels) == (DEFAULT_POLICY.max_bytes, DEFAULT_POLICY.max_pixels)


def test_the_service_refuses_by_the_policy(tiny_checkpoint):
    strip = encode(np.zeros((2, 300, 3), np.uint8))  # 150:1, over the policy's 20:1
    with TestClient(create_app(tiny_checkpoint, ServeSettings(max_upload_bytes=len(jpeg(True)) - 1))) as c:
        r = c.post("/v1/score", files=[("files", ("fine.jpg", jpeg(True), "image/jpeg"))])
        assert r.status_code == 413 and "bytes > the limit of" in r.json()["detail"], r.text
    with TestClient(create_app(tiny_checkpoint, ServeSettings())) as c:
        r = c.post("/v1/score", files=[("files", ("strip.png", strip, "image/png"))])
        assert r.status_code == 400 and "is more than 20:1" in r.json()["detail"], r.text
        with pytest.raises(ImageError) as err:  # iipa score's reading, the same limit
            open_image(strip)
        assert err.value.reason == "extreme aspect ratio"
        r = c.post("/v1/score", files=[("files", ("bomb.jpg", claiming(scan_padded_jpeg(90), 7000), "image/jpeg"))])
        assert r.status_code == 413 and r.json()["error"] == "too much decode work", r.text


def encode(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
