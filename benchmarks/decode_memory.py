"""Peak memory of decoding one image with ``iipa.images.open_image``, in bytes per pixel,
by format and mode: the figures behind ``iipa.images.PEAK_BYTES_PER_PIXEL`` (the service
budgets decodes by them). Each case runs in a fresh process; the figure is the growth of
peak RSS (VmHWM, reset just before) during the decode, over the image's full-size pixel count.

    python benchmarks/decode_memory.py --side 3000
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import numpy as np
from PIL import Image

CASES = {  # name -> (Pillow mode, format, save options)
    "jpeg-rgb": ("RGB", "JPEG", {"quality": 90}),
    "jpeg-rgb-progressive": ("RGB", "JPEG", {"quality": 90, "progressive": True}),
    "jpeg-grey": ("L", "JPEG", {}),
    "jpeg-cmyk": ("CMYK", "JPEG", {}),
    "png-rgb": ("RGB", "PNG", {}),
    "png-rgba": ("RGBA", "PNG", {}),
    "png-grey": ("L", "PNG", {}),
    "png-grey-alpha": ("LA", "PNG", {}),
    "png-palette": ("P", "PNG", {}),
    "png-palette-transparent": ("P", "PNG", {"transparency": 0}),
    "png-grey16": ("I;16", "PNG", {}),
    "png-bilevel": ("1", "PNG", {}),
    "webp-rgb": ("RGB", "WEBP", {"quality": 80}),
    "webp-rgba": ("RGBA", "WEBP", {"quality": 80}),
}

CHILD = """
import sys
from iipa.images import open_image

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
img = open_image(data, draft_size={draft}, max_pixels=10**9)
print((kib("VmHWM:") - before) * 1024)
"""


def make(mode: str, fmt: str, side: int, options: dict, path: str) -> None:
    rng = np.random.default_rng(0)
    # Smooth content (a photo compresses like this), plus noise so no codec shortcut applies.
    ramp = np.add.outer(np.arange(side), np.arange(side)) % 256
    base = (ramp + rng.integers(0, 8, (side, side))).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(base.astype(np.uint16) * 257)
    elif mode in ("RGB", "RGBA", "CMYK"):
        img = Image.fromarray(np.stack([base] * len(mode), axis=2), mode if mode != "CMYK" else None)
        img = img if mode != "CMYK" else Image.fromarray(np.stack([base] * 4, axis=2), "CMYK")
    else:
        img = Image.fromarray(base, "L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=int, default=3000, help="image side in pixels (default 3000: 9 MP)")
    p.add_argument("--draft", type=int, default=0, help="JPEG draft size (default 0: full-size decode)")
    args = p.parse_args(argv)
    draft = f"({args.draft}, {args.draft})" if args.draft else "None"
    print(f"| case | bytes/pixel (peak RSS growth / {args.side}² pixels) |\n| --- | --- |")
    for name, (mode, fmt, options) in CASES.items():
        path = f"/tmp/iipa-decode-memory-{name}.{fmt.lower()}"
        make(mode, fmt, args.side, options, path)
        out = subprocess.run([sys.executable, "-c", CHILD.format(draft=draft), path],
                             capture_output=True, text=True, check=True).stdout
        print(f"| {name} | {int(out) / args.side**2:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
