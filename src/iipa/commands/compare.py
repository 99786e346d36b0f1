"""Which of two photos will get more likes, with the probability the model gives it.

P(A gets more likes than B) = 1 / (1 + exp(-(score_A - score_B))): the logistic of the
score difference, the link the Siamese network was trained with (paper eq. 7-9). Prints
image_a, image_b, score_a, score_b, probability_a, more_popular. Only photos of the same
kind of account compare meaningfully (the paper's pairs come from one user).

examples:
  iipa compare beach.jpg sunset.jpg
  iipa compare a.jpg b.jpg --model run/best.pt --format json
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import (
    add_scoring_arguments,
    add_table_output_arguments,
    make_scorer_from_args,
)

NAME = "compare"
HELP = "which of two photos will get more likes, with the probability"
COLUMNS = ("image_a", "image_b", "score_a", "score_b", "probability_a", "more_popular")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image_a", metavar="A", help="first photo")
    parser.add_argument("image_b", metavar="B", help="second photo")
    add_scoring_arguments(parser)
    add_table_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from iipa.compare import compare
    from iipa.output import check_output, infer_format, open_output, write_rows

    check_output(args.output)  # before loading the model: a bad path must not cost the work
    fmt = infer_format(args.output, args.format)
    scorer = make_scorer_from_args(args)
    result = compare(scorer, args.image_a, args.image_b)
    with open_output(args.output) as fh:
        write_rows([result.to_dict()], COLUMNS, fmt, fh)
    winner, p = ("A", result.probability_a) if result.probability_a >= 0.5 else ("B", 1 - result.probability_a)
    print(f"iipa compare: {winner} ({result.more_popular}) is more likely to get more likes: P = {p:.3f} "
          f"(logistic of the score difference, as the model was trained)", file=sys.stderr)
    return 0
