"""Benchmark the PDIP builders (DuckDB and Spark) on synthetic crawls of 1M and 10M posts.

Prints posts/s, pairs produced and peak RSS for each engine and size, time(10M)/time(1M) per
engine, and Spark's time over DuckDB's for each size: both engines in one run, so the ratio
compares like with like on a loaded machine. Targets: DuckDB 10M posts in ≤ 60 s, time
ratio ≤ 12, peak RSS ≤ 4 GB; Spark on local[2] ≤ 12x DuckDB at 1M and 10M ≤ 10x its 1M.

``--engine`` picks one engine (default: both). Spark runs in a fresh local session per size
(its start-up included and also printed apart; ``--master``, ``--conf`` as for ``iipa pairs
build``); its peak RSS is the driver's Python process only, the JVM's is not counted. Peak
RSS is VmHWM, this process's own: ru_maxrss would carry over exec the peak of the parent
that generated the crawl.

The crawl imitates per-user activity: heavy-tailed posts per user (log-normal, 1 to a few
thousand), each user active over a period at their own rate, a per-user like level with
per-post noise, 75 % single images, and captions drawn from a per-user set of a few
captions so that identical hashtags and @-mentions recur as they do on real accounts.

usage: python benchmarks/pairs.py [--sizes 1000000 10000000] [--workdir /tmp/iipa-bench]
       python benchmarks/pairs.py --sizes 1000000 --master 'local[2]' [--conf KEY=VALUE ...]
       python benchmarks/pairs.py --engine duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

WORDS = "sun sea love happy day night city friends food coffee morning beach travel summer photo life".split()
CRAWL = np.datetime64("2019-06-01T00:00:00", "us")


def caption_pool(rng: np.random.Generator, n: int = 4000) -> list[str]:
    """Captions with 0-9 words, 0-3 hashtags (45 % none) and 0-2 mentions (48 % none)."""
    out = []
    for _ in range(n):
        parts = list(rng.choice(WORDS, rng.integers(0, 10)))
        if rng.random() > 0.456:
            parts += [f"#{t}" for t in rng.choice([f"tag{i}" for i in range(60)], rng.integers(1, 4))]
        if rng.random() > 0.479:
            parts += [f"@{m}" for m in rng.choice([f"friend.{i}" for i in range(60)], rng.integers(1, 3))]
        rng.shuffle(parts)
        out.append(" ".join(parts) if rng.random() > 0.05 else "")
    return out


def generate(n_posts: int, path: Path, seed: int = 0, chunk: int = 1_000_000) -> None:
    rng = np.random.default_rng(seed)
    per_user = np.maximum(1, rng.lognormal(3.6, 1.1, size=n_posts // 20)).astype(np.int64)
    per_user = per_user[np.cumsum(per_user) <= n_posts]
    per_user = np.append(per_user, n_posts - per_user.sum())
    per_user = per_user[per_user > 0]
    n_users = len(per_user)
    user_of = np.repeat(np.arange(n_users), per_user)
    level = rng.normal(5.0, 1.5, n_users)  # log-likes level per user
    gap_days = rng.lognormal(1.0, 0.8, n_users)  # mean days between a user's posts
    start = rng.uniform(0, 900, n_users)  # days before the crawl of the user's newest post
    pool = pa.array(caption_pool(rng))
    user_caps = rng.integers(0, len(pool), size=(n_users, 6))
    ids = rng.permutation(n_posts).astype(np.int64) * 7919 + 1_000_003
    schema = pa.schema([("post_id", pa.string()), ("user_id", pa.string()), ("taken_at", pa.timestamp("us", "UTC")),
                        ("crawled_at", pa.timestamp("us", "UTC")), ("media_type", pa.string()), ("likes", pa.int64()),
                        ("comments", pa.int64()), ("caption", pa.string())])
    media = pa.array(["image", "video", "carousel"])
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n_posts, chunk):
            hi = min(n_posts, lo + chunk)
            u = user_of[lo:hi]
            k = hi - lo
            days = start[u] - rng.uniform(0, 1, k) * gap_days[u] * per_user[u]
            taken = CRAWL - (np.maximum(days, 0) * 86_400e6).astype("timedelta64[us]")
            likes = np.exp(level[u] + rng.normal(0, 0.7, k)).astype(np.int64)
            cap_idx = user_caps[u, rng.integers(0, 6, k)]
            writer.write_table(pa.table({
                "post_id": pc.binary_join_element_wise("B", pc.cast(pa.array(ids[lo:hi]), pa.string()), ""),
                "user_id": pc.binary_join_element_wise("user", pc.cast(pa.array(u), pa.string()), ""),
                "taken_at": pa.array(taken, pa.timestamp("us", "UTC")),
                "crawled_at": pa.array(np.full(k, CRAWL), pa.timestamp("us", "UTC")),
                "media_type": pc.take(media, pa.array(rng.choice(3, k, p=[0.75, 0.1, 0.15]))),
                "likes": pa.array(likes), "comments": pa.array(rng.poisson(likes * 0.02)),
                "caption": pc.take(pool, pa.array(cap_idx)),
            }, schema=schema))


BUILD = """
import json, sys, time
from iipa.pairs.build import build_pairs
engine, options = sys.argv[3], json.loads(sys.argv[4])
start = 0.0
if engine == "spark":
    from iipa.pairs.spark import get_spark
    t = time.perf_counter()
    get_spark(options.get("master"), options.get("conf"))
    start = time.perf_counter() - t
t = time.perf_counter()
r = build_pairs([sys.argv[1]], sys.argv[2], engine=engine, overwrite=True, **options)
seconds = time.perf_counter() - t
with open("/proc/self/status") as fh:
    hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print("RESULT " + json.dumps({"seconds": seconds + start, "start": start, "pairs": len(r.pairs),
                              "funnel": r.stats["funnel"], "rss_mb": hwm / 1024}))
"""


def run_build(engine: str, posts: Path, out: Path, options: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", BUILD, str(posts), str(out), engine, json.dumps(options)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--workdir", default="/tmp/iipa-bench-pairs")
    ap.add_argument("--engine", choices=["duckdb", "spark", "both"], default="both")
    ap.add_argument("--master", help="spark: master URL (default local[*])")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="spark: a Spark setting")
    args = ap.parse_args()
    engines = ["duckdb", "spark"] if args.engine == "both" else [args.engine]
    options = {"duckdb": {}}
    if "spark" in engines:
        from iipa.spark.session import parse_conf  # the build's own --conf parsing

        options["spark"] = {"master": args.master, "conf": parse_conf(args.conf) or None}
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[int, float]] = {e: {} for e in engines}
    for size in map(int, args.sizes):
        posts = work / f"posts_{size}.parquet"
        if not posts.exists():
            t = time.perf_counter()
            generate(size, posts.with_suffix(".tmp"))
            os.replace(posts.with_suffix(".tmp"), posts)
            print(f"generated {size:,} posts in {time.perf_counter() - t:.1f} s -> {posts}", file=sys.stderr)
        for engine in engines:
            r = run_build(engine, posts, work / f"out_{engine}_{size}", options[engine])
            times[engine][size] = r["seconds"]
            print(f"{engine:>6} {size:>11,} posts: {r['seconds']:7.1f} s  {size / r['seconds']:>10,.0f} posts/s  "
                  f"{r['pairs']:>9,} pairs  peak RSS {r['rss_mb']:,.0f} MB  "
                  f"(eligible {r['funnel']['eligible_posts']:,}, candidates {r['funnel']['candidate_pairs']:,})"
                  + (f"  [session start {r['start']:.1f} s included]" if engine == "spark" else ""), flush=True)
        if len(engines) == 2:
            print(f"spark / duckdb at {size:,} posts = {times['spark'][size] / times['duckdb'][size]:.1f}x", flush=True)
    for engine in engines:
        if len(times[engine]) >= 2:
            small, big = min(times[engine]), max(times[engine])
            print(f"{engine}: time({big:,}) / time({small:,}) = {times[engine][big] / times[engine][small]:.2f}")


if __name__ == "__main__":
    main()
