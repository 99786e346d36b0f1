"""Download the images of a pairs or posts table into an id-named folder (<dir>/<post_id>.<ext>).

URLs come from the posts' image_url column (a posts table, or --posts for a pairs table) or
from --url-template, where {post_id} is replaced by the post's shortcode. Images already in
the folder are skipped, so an interrupted run resumes. Every body must decode as an image;
HTML pages, truncated bodies and non-images are refused. Broken links are listed in
fetch_report.csv (or --report). Exit code 0 when every image is there, 1 when some links
are broken, 2 when none of the images is there or on usage errors.

examples:
  iipa fetch pdip/pairs.parquet --posts crawl/ --out images/
  iipa fetch pdip/pairs.parquet --url-template 'https://www.instagram.com/p/{post_id}/media/?size=l' --out images/
  iipa fetch posts.parquet --out images/ --workers 16 --retries 5
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import (
    coverage_code,
    nonnegative_int,
    positive_float,
    positive_int,
)
from iipa.errors import IIPAError
from iipa.extras import require
from iipa.progress import progress as progress_bar

NAME = "fetch"
HELP = "download the images of a pairs or posts table (concurrent, resumable, validated)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="a pairs table (high_id, low_id) or a posts table (post_id[, image_url])")
    parser.add_argument("--out", required=True, metavar="DIR", help="image folder (<dir>/<post_id>.<ext>)")
    parser.add_argument("--posts", nargs="+", help="posts files with image_url, for a pairs table")
    parser.add_argument("--url-template", help="URL for posts without image_url; {post_id} is replaced")
    parser.add_argument("--workers", type=positive_int, default=8, help="concurrent downloads (default 8)")
    parser.add_argument("--retries", type=nonnegative_int, default=3, help="retries per image for transient errors (default 3)")
    parser.add_argument("--backoff", type=positive_float, default=0.5, help="first retry delay in seconds, doubled each time (default 0.5)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--max-mb", type=positive_float, default=50.0, help="refuse bodies larger than this (default 50 MB)")
    parser.add_argument("--report", help="broken-link report CSV (default <out>/fetch_report.csv)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    require("pairs", "iipa fetch")
    from iipa.pairs.fetch import fetch_images, items_from_table

    items = items_from_table(args.table, url_template=args.url_template, posts=args.posts)
    if not items:
        raise IIPAError(f"{args.table}: no posts to fetch")
    if not any(url for _, url in items):
        raise IIPAError(f"{args.table}: no image URLs (give --url-template, or --posts with an image_url column)")
    with progress_bar(len(items), enabled=args.progress, desc="fetching") as bar:
        summary = fetch_images(items, args.out, workers=args.workers, retries=args.retries, backoff=args.backoff,
                               timeout=args.timeout, max_bytes=int(args.max_mb * 1024 * 1024), report=args.report,
                               progress=lambda _o: bar.update(1))
    c = summary.counts
    print(f"{c['ok']} downloaded, {c['cached']} already there, {c['dead']} dead, {c['failed']} failed; "
          f"report: {summary.report}")
    if summary.broken:
        print(f"iipa fetch: {len(summary.broken)} of {len(items)} images missing:", file=sys.stderr)
        for o in summary.broken[:10]:
            print(f"  {o.post_id}: {o.status}: {o.error}", file=sys.stderr)
    return coverage_code(len(items), len(summary.broken))
