"""Score images: files, folders (recursive), globs, and .txt/.csv lists of paths.

Output columns: path, score, scaled (0-100), level, error (empty when scored);
scaled and level need the model's reference distribution (see README). Exit code 0 when every input
was scored, 1 when some failed (a summary goes to stderr), 2 when none could be scored or on
usage errors.

examples:
  iipa score my_photos/
  iipa score 'shoot/**/*.jpg' --sort desc --output scores.csv
  iipa score list.txt --model run/best.pt --format jsonl
  iipa score my_photos/ --model model.onnx          # onnxruntime (see `iipa export`)
  iipa score paths.parquet --engine spark --output scores/   # on Spark, into a Parquet folder
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import (
    add_scoring_arguments,
    add_table_output_arguments,
    coverage_code,
    make_scorer_from_args,
)
from iipa.commands._score_spark import add_spark_arguments, check_local, run_spark
from iipa.errors import IIPAError
from iipa.output import SCORE_COLUMNS as COLUMNS
from iipa.progress import progress as progress_bar

NAME = "score"
HELP = "score images (files, folders, globs, list files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, folders, globs, .txt or .csv lists; - reads paths from stdin")
    add_scoring_arguments(parser)
    g = parser.add_argument_group("output")
    add_table_output_arguments(g)
    g.add_argument("--sort", choices=["desc", "asc", "none"], default="none",
                   help="order rows by score (failed inputs last); default: input order, streamed")
    g.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_spark_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from iipa.fileio import printable
    from iipa.inputs import expand_inputs
    from iipa.output import check_output, infer_format, open_output, write_rows

    if args.engine == "spark":
        return run_spark(args)
    check_local(args)
    check_output(args.output)  # a folder or an unwritable path fails now, not after scoring
    fmt = infer_format(args.output, args.format)
    paths = expand_inputs(args.inputs, recursive=not args.no_recursive)
    if not paths:
        raise IIPAError("no image files found in " + ", ".join(args.inputs))
    scorer = make_scorer_from_args(args)
    from iipa.modelcard import warn_before_scoring

    warn_before_scoring(scorer.record, "iipa score")
    failed: list[dict] = []

    def rows():
        with progress_bar(len(paths), enabled=args.progress, desc="scoring") as bar:
            for result in scorer.iter_scores(paths, progress=bar):
                row = result.to_dict()
                if not result.ok:
                    failed.append(row)
                yield row

    source = rows()
    if args.sort != "none":
        everything = list(source)
        ok = sorted((r for r in everything if r["error"] is None), key=lambda r: r["score"],
                    reverse=args.sort == "desc")
        source = iter(ok + [r for r in everything if r["error"] is not None])
    with open_output(args.output) as fh:
        n = write_rows(source, COLUMNS, fmt, fh)
    if failed:
        print(f"iipa score: {len(failed)} of {n} inputs could not be scored:", file=sys.stderr)
        for row in failed[:20]:
            print(f"  {printable(row['path'])}: {row['error']}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (see the error column)", file=sys.stderr)
    return coverage_code(n, len(failed))
