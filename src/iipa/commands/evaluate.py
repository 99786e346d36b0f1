"""Pairwise accuracy of a model on a pairs table, per split, with 95% Wilson intervals.

A pair is correct when the more popular image (high_id) scores strictly higher; ties
count as half correct and are reported. Next to accuracy, the calibration of the printed
probability P = logistic(f(high) - f(low)): mean confidence of the picked photo, expected
calibration error (10 bins of 0.05 on [0.5, 1]), log-loss and Brier score. A plain summary
per split (test first) goes to stderr, the JSON to stdout or -o; --out DIR also writes a
reliability diagram per split (reliability-<split>.svg). Exit code 0 when every pair was
scored, 1 when some pairs lack an image or have an unreadable one (a summary line names the
first), 2 when none could be scored. Works on any pairs table: Instagram PDIPs, or
popular-vs-unpopular pairs from Reddit or Flickr (put the popular image in high_id).

examples:
  iipa evaluate --model runs/r50/best.pt --pairs pairs.parquet --images images/
  iipa evaluate --pairs reddit_pairs.csv --images reddit/ --split test --crops 10 -o eval.json
  iipa evaluate --pairs pairs.parquet --images images/ --split test --out eval/
"""

from __future__ import annotations

import argparse
import json
import sys

from iipa.commands._common import (
    add_scoring_arguments,
    coverage_exit,
    make_scorer_from_args,
    positive_int,
)
from iipa.constants import SPLITS
from iipa.errors import IIPAError

NAME = "evaluate"
HELP = "pairwise accuracy (95% CI) of a model on a pairs table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, help="pairs table (.parquet or .csv)")
    parser.add_argument("--images", required=True, help="folder of <post_id>.<ext> images")
    parser.add_argument("--split", action="append", choices=SPLITS,
                        help="evaluate only this split (repeatable; default: every split present)")
    parser.add_argument("--max-pairs", type=positive_int, help="a seeded random subset of at most N pairs per split")
    parser.add_argument("--output", "-o", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument("--out", metavar="DIR", help="also write a reliability diagram per split here (SVG)")
    add_scoring_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from iipa.evaluate import evaluate_pairs, summary_lines
    from iipa.output import open_output

    result = evaluate_pairs(make_scorer_from_args(args), args.pairs, args.images, splits=args.split,
                            max_pairs=args.max_pairs)
    result["model"] = args.model.name
    result["pairs"] = str(args.pairs)
    if not result["pairs_requested"]:
        raise IIPAError(f"{args.pairs}: no pairs to evaluate" + (f" in split {', '.join(args.split)}"
                                                                   if args.split else ""))
    coverage = _coverage(result, args.images)
    if result["all"]["n"] == 0:  # nothing scored: one error line (exit 2), no output written
        coverage_exit(NAME, **coverage)
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    code = coverage_exit(NAME, **coverage)
    if args.out:
        _reliability_diagrams(result, args.out)
    with open_output(args.output) as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    return code


def _coverage(result: dict, images: str) -> dict:
    """What :func:`coverage_exit` needs: pairs not scored (an image missing or unreadable) make
    exit 1, none scored is an error; an accuracy on a fraction of the pairs is not a success."""
    missing, unscored = result["missing_images_pairs"], result["all"]["skipped"]
    why = f"lack an image in {images}"
    if unscored:
        why += f" or have one that could not be read ({unscored:,} pairs)"
    return {"total": result["pairs_requested"], "failed": missing + unscored, "what": "pairs", "why": why,
            "examples": result["missing_images_examples"]}


def _reliability_diagrams(result: dict, out: str) -> None:
    from iipa.output import ensure_out_dir
    from iipa.plots import reliability_svg, write_svg

    folder = ensure_out_dir(out)
    for split, r in result["splits"].items():
        if r.get("calibration"):
            path = write_svg(reliability_svg(r["calibration"], title=f"{split} pairs"), folder / f"reliability-{split}.svg")
            r["calibration"]["diagram"] = str(path)
