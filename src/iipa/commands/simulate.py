"""Simulate a social network crawl with known intrinsic image popularity.

Writes DIR/posts.parquet (the posts schema, like a real crawl), DIR/truth.parquet (true
intrinsic popularity, image latents and every term of the likes model per post) and
DIR/simulation.json (parameters and a summary). An existing crawl in DIR made with the
same parameters is reused (generation is deterministic); --force regenerates it.
Images are rendered lazily: --render-pairs renders only the posts in a pairs table.

examples:
  iipa simulate --out sim --users 2000 --posts-per-user 30 --seed 1
  iipa simulate --out sim --users 500000 --posts 10000000 --seed 1 --beta 0.8
  iipa simulate --out sim --users 2000 --seed 1 --render-pairs pairs.parquet --images sim/images --size 224
"""

from __future__ import annotations

import argparse
import sys
import time

from iipa.commands._common import positive_int
from iipa.errors import IIPAError
from iipa.extras import require
from iipa.progress import progress as progress_bar

NAME = "simulate"
HELP = "simulate a crawl with known intrinsic popularity; render images for pairs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from iipa.simulate import SimConfig

    d = SimConfig()
    parser.add_argument("--out", required=True, metavar="DIR", help="crawl folder (posts.parquet, truth.parquet, simulation.json)")
    g = parser.add_argument_group("size and seed")
    g.add_argument("--users", type=positive_int, default=d.users, help=f"number of users (default: {d.users})")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--posts-per-user", type=float, default=d.posts_per_user,
                      help=f"mean posts per user; activity is heavy-tailed (default: {d.posts_per_user:g})")
    size.add_argument("--posts", type=positive_int, help="total number of posts (instead of --posts-per-user)")
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    m = parser.add_argument_group("model")
    m.add_argument("--beta", type=float, default=d.beta,
                   help=f"log likes per std of intrinsic popularity (default: {d.beta:g}; 0: images do not matter)")
    m.add_argument("--noise", type=float, default=d.noise_sigma,
                   help=f"std of the Gaussian noise on log likes (default: {d.noise_sigma:g})")
    m.add_argument("--crawl-date", default=d.crawl_date, help=f"ISO date of the crawl (default: {d.crawl_date})")
    m.add_argument("--history-days", type=float, default=d.history_days,
                   help=f"age of the oldest posts in days (default: {d.history_days:g})")
    r = parser.add_argument_group("images")
    r.add_argument("--render-pairs", metavar="PAIRS", help="render the images of every post in this pairs table")
    r.add_argument("--images", help="image folder for --render-pairs (default: OUT/images)")
    r.add_argument("--size", type=int, default=224, help="image side in pixels (default: 224)")
    parser.add_argument("--force", action="store_true", help="regenerate the crawl even if OUT has an identical one")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars on stderr (default: when stderr is a terminal)")


def _config(args: argparse.Namespace):
    from iipa.simulate import SimConfig

    given = {"users": args.users, "seed": args.seed, "beta": args.beta, "noise_sigma": args.noise,
             "crawl_date": args.crawl_date, "history_days": args.history_days}
    if args.posts is not None:
        given.update(posts=args.posts)
    else:
        given.update(posts=None, posts_per_user=args.posts_per_user)
    return SimConfig.from_dict(given)


def run(args: argparse.Namespace) -> int:
    require("pairs", "iipa simulate")
    from iipa.simulate import read_truth, render_images, write_crawl

    if args.size < 8:
        raise IIPAError(f"--size {args.size}: images must be at least 8 pixels")
    config = _config(args)
    pairs = None
    if args.render_pairs:       # a bad pairs file should fail before minutes of generation
        from iipa.pairs.table import read_pairs

        pairs = read_pairs(args.render_pairs)
    start = time.perf_counter()
    with progress_bar(config.total_posts, enabled=args.progress, desc="posts") as bar:
        files = write_crawl(args.out, config, reuse=not args.force, progress=bar.update)
    how = "reused (same parameters)" if files.reused else f"{time.perf_counter() - start:.1f} s"
    print(f"crawl: {config.total_posts} posts by {config.users} users in {files.posts.parent} ({how})",
          file=sys.stderr)
    if pairs is not None:
        ids = list(dict.fromkeys(list(pairs["high_id"]) + list(pairs["low_id"])))
        truth = read_truth(files.truth, post_ids=ids)
        images = args.images or str(files.posts.parent / "images")
        with progress_bar(len(ids), enabled=args.progress, desc="rendering") as bar:
            paths = render_images(ids, truth, images, size=args.size, progress=bar.update)
        print(f"images: {len(paths)} at {args.size}x{args.size} px in {images}", file=sys.stderr)
    print(files.posts)
    return 0
