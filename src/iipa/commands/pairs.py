"""Build popularity-discriminable image pairs (PDIPs) from crawl metadata, and manage pair lists.

sub-commands:
  build POSTS... --out DIR   posts (Parquet/CSV/JSONL files, folders, globs) -> DIR/pairs.parquet,
                             stats.json, stats.md (the paper's Table 1), rejects.csv; exit 1 when
                             some posts were rejected (malformed rows), 2 when all were
  import-authors CSV -o pairs.parquet
                             the authors' released list (Low_popularity,High_popularity)
  stats PAIRS                print the statistics of a build folder or a pairs table

examples:
  iipa pairs build crawl/*.parquet --out pdip/
  iipa pairs build posts.csv --crawled-at 2019-03-01 --threshold 0.9 --split-by-user --out pdip/
  iipa pairs build posts.parquet --engine spark --out pdip/
  iipa pairs build 'crawl/*.parquet' --engine spark --master 'local[2]' --conf spark.driver.memory=4g --out pdip/
  iipa pairs import-authors popularity_pairs.csv -o authors.parquet
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from iipa.commands._common import coverage_code, nonnegative_int, positive_int
from iipa.constants import SPLITS
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "pairs"
HELP = "build PDIPs from crawl metadata; import the authors' pair list; statistics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pairs_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="posts -> pairs.parquet + stats.json/.md + rejects.csv",
                       description="Build PDIPs (paper §3.1) from posts files.")
    b.add_argument("posts", nargs="+", help="posts files (.parquet, .csv, .jsonl), folders or globs")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty, unless --overwrite)")
    b.add_argument("--overwrite", action="store_true", help="replace an earlier build's files in --out")
    b.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                   help="duckdb (default, one machine, streams from disk) or spark (pyspark; cluster via spark-submit)")
    b.add_argument("--crawled-at", help="crawl time for posts without a crawled_at column/value (ISO 8601, UTC)")
    paper = _paper_rules()
    r = b.add_argument_group("rules (defaults: the paper's)")
    r.add_argument("--threshold", "-T", type=float, default=paper.threshold,
                   help=f"minimum P(Q_high ≥ Q_low) (default {paper.threshold})")
    r.add_argument("--sigma", type=float, default=paper.sigma, help=f"σ of the Thurstone model (default {paper.sigma})")
    r.add_argument("--log-base", default="e", help="base of S = log(likes): e (default), 10, 2, ...")
    r.add_argument("--min-likes", type=nonnegative_int, default=paper.min_likes,
                   help=f"minimum likes per post (default {paper.min_likes})")
    r.add_argument("--min-age-days", type=float, default=paper.min_age_days,
                   help=f"posted at least this long before the crawl (default {paper.min_age_days:g})")
    r.add_argument("--max-gap-days", type=float, default=paper.max_gap_days,
                   help=f"maximum upload-time gap in a pair (default {paper.max_gap_days:g})")
    r.add_argument("--max-caption-words", type=nonnegative_int, default=paper.max_caption_words,
                   help=f"maximum caption words besides hashtags and @-mentions (default {paper.max_caption_words})")
    r.add_argument("--media-types", default=",".join(paper.media_types),
                   help=f"comma-separated media types to keep (default: {','.join(paper.media_types)})")
    r.add_argument("--any-hashtags", action="store_true", help="do not require identical hashtags")
    r.add_argument("--any-mentions", action="store_true", help="do not require identical @-mentions")
    s = b.add_argument_group("splits")
    s.add_argument("--val", help="validation pairs: a count (5000) or a fraction (0.02); default: the paper's "
                                 "50,000 of 2.5M, i.e. 2 %% capped at 50,000")
    s.add_argument("--test", help="test pairs, like --val")
    s.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
    s.add_argument("--split-by-user", action="store_true", help="keep all pairs of a user in one split")
    e = b.add_argument_group("engine")
    e.add_argument("--memory-limit",
                   help="duckdb: memory limit; it spills to disk beyond (default 2GB; more is faster on big inputs)")
    e.add_argument("--threads", type=positive_int, help="duckdb: threads (default: all cores)")
    e.add_argument("--master", help="spark: master URL (default local[*]; under spark-submit, spark-submit's)")
    e.add_argument("--conf", action="append", metavar="KEY=VALUE",
                   help="spark: a Spark setting, repeatable (e.g. spark.sql.shuffle.partitions=64)")
    b.set_defaults(pairs_run=_build)

    a = sub.add_parser("import-authors", help="the authors' Low_popularity,High_popularity CSV -> pairs table")
    a.add_argument("csv", help="the authors' pair list")
    a.add_argument("--output", "-o", required=True, metavar="FILE", help="pairs table to write (.parquet or .csv)")
    a.add_argument("--split", default="test", choices=SPLITS, help="split of every pair (default test)")
    a.set_defaults(pairs_run=_import_authors)

    st = sub.add_parser("stats", help="print the statistics of a build folder or a pairs table")
    st.add_argument("path", help="a build folder (with stats.json) or a pairs table")
    st.add_argument("--format", "-f", choices=["markdown", "json"], default="markdown",
                    help="markdown (default) or json")
    st.set_defaults(pairs_run=_stats)


def _paper_rules():
    from iipa.pairs.rules import PAPER  # stdlib and numpy only: cheap enough for `iipa --help`

    return PAPER


def run(args: argparse.Namespace) -> int:
    if getattr(args, "engine", None) == "spark":
        require("spark", "iipa pairs build --engine spark")
    require("pairs", "iipa pairs")
    return args.pairs_run(args)


def _rules(args):
    from iipa.pairs.rules import RuleConfig

    try:
        base = math.e if args.log_base.lower() == "e" else float(args.log_base)
    except ValueError:
        raise IIPAError(f"--log-base {args.log_base!r}: expected e or a number > 1") from None
    return RuleConfig(min_likes=args.min_likes, min_age_days=args.min_age_days, max_gap_days=args.max_gap_days,
                      max_caption_words=args.max_caption_words, threshold=args.threshold, sigma=args.sigma,
                      log_base=base, media_types=tuple(m.strip().lower() for m in args.media_types.split(",") if m.strip()),
                      same_hashtags=not args.any_hashtags, same_mentions=not args.any_mentions)


def _build(args) -> int:
    from iipa.pairs.build import build_pairs
    from iipa.pairs.stats import table1_markdown
    from iipa.progress import heartbeat

    conf = None
    if args.conf is not None:
        from iipa.spark.session import parse_conf

        conf = parse_conf(args.conf)
    with heartbeat(f"pairs build ({args.engine})"):  # one SQL job: no count to show, only that it runs
        res = build_pairs(args.posts, args.out, rules=_rules(args), crawled_at=args.crawled_at, seed=args.seed,
                          val=args.val, test=args.test, split_by_user=args.split_by_user, engine=args.engine,
                          memory_limit=args.memory_limit, threads=args.threads, master=args.master, conf=conf,
                          overwrite=args.overwrite)
    st = res.stats
    print(table1_markdown(st["table1"]))
    print(f"splits: {', '.join(f'{k} {v:,}' for k, v in st['splits'].items())}")
    print(f"wrote {res.paths['pairs']}, {res.paths['stats']}, {res.paths['stats_md']}")
    posts = st["posts"]
    if posts["rejected_total"]:
        print(f"iipa pairs: {posts['rejected_total']:,} of {posts['rows']:,} posts rejected ("
              + ", ".join(f"{r}: {n:,}" for r, n in posts["rejected"].items()) + f"); see {res.paths['rejects']}",
              file=sys.stderr)
    # rejected rows are inputs that failed (a rule that filters a valid post is no failure)
    return coverage_code(posts["rows"], posts["rejected_total"])


def _import_authors(args) -> int:
    from iipa.pairs.authors import read_authors_pairs
    from iipa.pairs.table import write_pairs

    pairs = read_authors_pairs(args.csv, split=args.split)
    path = write_pairs(pairs, args.output)
    print(f"wrote {len(pairs):,} pairs to {path}")
    return 0


def _stats(args) -> int:
    from iipa.pairs.stats import stats_markdown
    from iipa.pairs.table import read_pairs

    path = Path(args.path)
    if path.is_dir():
        if not (path / "stats.json").is_file():
            raise IIPAError(f"{path}: no stats.json in this folder")
        stats = json.loads((path / "stats.json").read_text(encoding="utf-8"))
    else:
        pairs = read_pairs(path)
        stats = {"table1": {"pairs": len(pairs), "users": int(pairs["user_id"].nunique()),
                            "avg_p": _mean(pairs["p"]), "avg_interval_days": _mean(pairs["delta_t_days"])},
                 "splits": {k: int((pairs["split"] == k).sum()) for k in ("train", "val", "test")}}
    as_json = args.format == "json"
    print(json.dumps(stats, indent=2) if as_json else stats_markdown(stats), end="\n" if as_json else "")
    return 0


def _mean(col):
    col = col.dropna()
    return float(col.astype(float).mean()) if len(col) else None
