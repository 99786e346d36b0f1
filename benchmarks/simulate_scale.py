"""How fast and how lean is the simulator? Prints metadata and rendering figures.

    python benchmarks/simulate_scale.py --posts 10000000 --users 500000 --out /tmp/sim10m

Metadata is generated block by block and streamed to Parquet, so peak memory depends on
the block size, not on the number of posts. Peak RSS is the process's maximum resident
set size (``getrusage``), which includes Python, numpy and pyarrow themselves.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=None, help="default: posts / 20")
    ap.add_argument("--out", default=None, help="crawl folder (default: a temporary one)")
    ap.add_argument("--render", type=int, default=200, help="images to render per size")
    args = ap.parse_args(argv)

    from iipa.simulate import SimConfig, read_truth, render_image, write_crawl

    users = args.users or max(1, args.posts // 20)
    out = Path(args.out or tempfile.mkdtemp(prefix="iipa-sim-"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, cpu = time.perf_counter(), time.process_time()
    files = write_crawl(out, SimConfig(users=users, posts=args.posts, seed=1))
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = (files.posts.stat().st_size + files.truth.stat().st_size) / 2**20
    print(f"metadata: {args.posts:,} posts, {users:,} users: {dt:.1f} s "
          f"({args.posts / dt:,.0f} posts/s; {cpu:.1f} s CPU); peak RSS {rss:.0f} MiB (after imports {rss0:.0f} MiB); "
          f"posts+truth on disk {size:.0f} MiB")

    import pyarrow.parquet as pq

    first = pq.ParquetFile(files.truth).read_row_group(0).to_pandas().head(args.render)
    truth = read_truth(files.truth, post_ids=first["post_id"])
    rows = [truth.iloc[i] for i in range(len(truth))]
    for size_px in (64, 224):
        render_image(rows[0], size=size_px)
        t, cpu = time.perf_counter(), time.process_time()
        for row in rows:
            render_image(row, size=size_px)
        ms = (time.perf_counter() - t) / len(rows) * 1000
        cpu_ms = (time.process_time() - cpu) / len(rows) * 1000
        print(f"render: {size_px}x{size_px} px: {ms:.2f} ms/image wall, {cpu_ms:.2f} ms CPU "
              "(PIL image, before JPEG encoding)")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
