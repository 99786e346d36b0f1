"""How fast and how cheaply pathological files are refused: 7000x7000 progressive JPEGs
whose last scan is repeated until they have 100 and 20,000 scans, a PNG whose image data is
cut into 1-byte IDAT chunks, and a 3 GiB sparse file (a 5 KB JPEG, then zeros). Prints the
file size and the seconds (wall and CPU) ``open_image`` (what ``iipa score`` runs) and the
service's header probe take to refuse or decode each, then the peak RSS and wall time of
``iipa score`` on the sparse file (refused by ``--max-bytes``, then allowed: only its JPEG is
read) against the 5 KB JPEG alone, each in a fresh process.

    python benchmarks/decode_bombs.py [--tmp DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from iipa.errors import ImageError  # noqa: E402
from iipa.images import open_image  # noqa: E402
from iipa.serve.settings import ServeSettings  # noqa: E402
from iipa.serve.uploads import ApiError, Upload, probe  # noqa: E402
from test_serve_decode_work import chunked_png  # noqa: E402  (the tests' PNG builder)

# Runs `iipa score` in this fresh process and reports its own peak RSS (VmHWM) and wall time.
SCORE = """
import json, sys, time
from iipa.cli import main
t = time.perf_counter()
code = main(["score", sys.argv[1], "-f", "csv", "-o", sys.argv[2], *sys.argv[3:]])
wall = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"code": code, "wall": wall, "peak_mb": hwm / 1024}))
"""


def progressive_jpeg(side: int, scans: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 140, 160)).save(buf, "JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    last_sos, eoi = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    have = data.count(b"\xff\xda")
    return data[:eoi] + data[last_sos:eoi] * max(0, scans - have) + data[eoi:]


def timed(name: str, data: bytes) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        open_image(data, draft_size=(224, 224))
        score = "decoded"
    except ImageError as exc:
        score = f"refused: {exc.reason}"
    t1, c1 = time.perf_counter(), time.process_time()
    try:
        probe(Upload(name, data), ServeSettings(), draft_size=(224, 224))
        serve = "accepted"
    except ApiError as exc:
        serve = f"{exc.status} {exc.error}"
    t2 = time.perf_counter()
    print(f"| {name} | {len(data) / 1e6:.2f} MB | {score}, {t1 - t0:.3f} s wall, {c1 - c0:.3f} s CPU "
          f"| {serve}, {t2 - t1:.3f} s |", flush=True)


def scored(path: Path, out: Path, *options: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCORE, str(path), str(out), *options], capture_output=True,
                          text=True, check=False)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sparse_file(tmp: Path) -> None:
    small = tmp / "small.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((96, 96)).save(small, quality=75)  # about 5 KB
    huge = tmp / "sparse.jpg"
    with open(huge, "wb") as fh:
        fh.write(small.read_bytes())
        fh.truncate(3 * 2**30)
    t0 = time.perf_counter()
    try:
        open_image(huge)
    except ImageError as exc:
        print(f"\nopen_image({huge.name}): {exc.reason} in {time.perf_counter() - t0:.4f} s")
    print("\n| `iipa score` on | peak RSS | wall (model loading included) | result |\n| --- | --- | --- | --- |")
    for path, options in ((small, ()), (huge, ()), (huge, ("--max-bytes", str(4 * 2**30)))):
        r = scored(path, tmp / "scores.csv", *options)
        row = (tmp / "scores.csv").read_text().splitlines()[1].replace(str(tmp), "")
        print(f"| {path.name} ({path.stat().st_size:,} bytes) {' '.join(options)} | {r['peak_mb']:.0f} MB | "
              f"{r['wall']:.3f} s | exit {r['code']}: {row} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", help="folder for the sparse file (default: a temporary folder)")
    args = parser.parse_args()
    print("| file | size | open_image (iipa score) | service probe |\n| --- | --- | --- | --- |")
    for scans in (10, 100, 20_000):
        timed(f"7000² progressive JPEG, {scans} scans", progressive_jpeg(7000, scans))
    timed("PNG in 1-byte IDAT chunks", chunked_png(1))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        sparse_file(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
