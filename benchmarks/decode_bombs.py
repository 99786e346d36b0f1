"""How fast pathological files are refused (issue 23, item 4): a 7000x7000 progressive JPEG
whose last scan is repeated until it has 20,000 (and 60,000) scans, and a PNG whose image
data is cut into 1-byte IDAT chunks. Prints the file size and the seconds ``open_image``
(what ``iipa score`` runs) and the service's header probe take to refuse each.

    python benchmarks/decode_bombs.py
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from iipa.errors import ImageError  # noqa: E402
from iipa.images import open_image  # noqa: E402
from iipa.serve.settings import ServeSettings  # noqa: E402
from iipa.serve.uploads import ApiError, Upload, probe  # noqa: E402
from test_serve_decode_work import chunked_png  # noqa: E402  (the tests' PNG builder)


def progressive_jpeg(side: int, scans: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 140, 160)).save(buf, "JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    last_sos, eoi = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    have = data.count(b"\xff\xda")
    return data[:eoi] + data[last_sos:eoi] * max(0, scans - have) + data[eoi:]


def timed(name: str, data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        open_image(data, draft_size=(224, 224))
        score = "decoded"
    except ImageError as exc:
        score = f"refused: {exc.reason}"
    t1 = time.perf_counter()
    try:
        probe(Upload(name, data), ServeSettings(), draft_size=(224, 224))
        serve = "accepted"
    except ApiError as exc:
        serve = f"{exc.status} {exc.error}"
    t2 = time.perf_counter()
    print(f"| {name} | {len(data) / 1e6:.2f} MB | {score}, {t1 - t0:.3f} s | {serve}, {t2 - t1:.3f} s |", flush=True)


def main() -> int:
    print("| file | size | open_image (iipa score) | service probe |\n| --- | --- | --- | --- |")
    for scans in (10, 20_000, 60_000):
        timed(f"7000² progressive JPEG, {scans} scans", progressive_jpeg(7000, scans))
    timed("PNG in 1-byte IDAT chunks", chunked_png(1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
