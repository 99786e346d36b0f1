"""Rank a folder of photos by predicted intrinsic popularity, best first.

Prints rank, path, score, scaled (0-100), level, error. --report album.html writes a
self-contained HTML contact sheet (thumbnails embedded, no network needed to view it) and
the score histogram with its fitted Gaussian beside it (album.histogram.svg, or
--histogram PATH; paper Fig. 5). Exit code 0 when every image was scored, 1 when some
failed, 2 when none could be scored. --heatmaps adds a Grad-CAM overlay next to each
thumbnail (slower: one backward pass per image).

examples:
  iipa rank holiday/ --report holiday.html
  iipa rank holiday/ --model run/best.pt --report album.html --heatmaps --top 20
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import (
    add_scoring_arguments,
    add_table_output_arguments,
    coverage_code,
    make_scorer_from_args,
    positive_int,
)
from iipa.errors import IIPAError
from iipa.extras import require
from iipa.progress import progress as progress_bar

NAME = "rank"
HELP = "rank photos best first; HTML album report and score histogram"
COLUMNS = ("rank", "path", "score", "scaled", "level", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="folders, image files, globs, .txt or .csv lists; - reads paths from stdin")
    add_scoring_arguments(parser)
    g = parser.add_argument_group("report")
    g.add_argument("--report", help="write the HTML album here (e.g. album.html)")
    g.add_argument("--histogram", help="write the histogram SVG here (default with --report: beside it)")
    g.add_argument("--heatmaps", action="store_true", help="add Grad-CAM overlays to the album")
    g.add_argument("--thumb-size", type=positive_int, default=320, help="longest thumbnail side in pixels (default 320)")
    g.add_argument("--top", type=positive_int, default=None, help="keep only the N best images (table and album)")
    add_table_output_arguments(g)
    g.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from iipa.fileio import printable, write_text
    from iipa.inputs import expand_inputs
    from iipa.output import check_output, infer_format, open_output, write_rows
    from iipa.report import fit_gaussian, score_histogram, write_album

    if args.heatmaps:  # Grad-CAM runs the PyTorch model: say so now, not after scoring every image
        require("torch", "iipa rank --heatmaps")
    for path, flag in ((args.output, "--output"), (args.report, "--report"), (args.histogram, "--histogram")):
        check_output(path, flag)  # before scoring: a bad path must not cost the whole run
    fmt = infer_format(args.output, args.format)
    if args.heatmaps and not args.report:
        raise IIPAError("--heatmaps needs --report")
    if args.histogram and not args.histogram.lower().endswith(".svg"):
        raise IIPAError(f"--histogram {args.histogram}: the histogram is an SVG drawing; name it *.svg")
    if args.top is not None and args.top < 1:
        raise IIPAError(f"--top must be at least 1, got {args.top}")
    paths = expand_inputs(args.inputs, recursive=not args.no_recursive)
    if not paths:
        raise IIPAError("no image files found in " + ", ".join(args.inputs))
    scorer = make_scorer_from_args(args)
    # Scores come from the chosen backend; heatmaps from the model's PyTorch weights.
    model = scorer.torch_model() if args.heatmaps else None
    with progress_bar(len(paths), enabled=args.progress, desc="scoring") as bar:
        results = list(scorer.iter_scores(paths, progress=bar))
    ok = sorted((r for r in results if r.ok), key=lambda r: r.score, reverse=True)
    failed = [r for r in results if not r.ok]
    shown = ok[: args.top] if args.top else ok
    rows = [{"rank": i, **r.to_dict()} for i, r in enumerate(shown, 1)] + [r.to_dict() for r in failed]
    with open_output(args.output) as fh:
        write_rows(rows, COLUMNS, fmt, fh)
    if args.report:
        out = write_album(shown + failed, args.report, record=scorer.record, model=model, heatmaps=args.heatmaps,
                          thumb_size=args.thumb_size, histogram_path=args.histogram,
                          all_scores=[r.score for r in ok])
        print(f"iipa rank: wrote {out['report']} and {out['histogram']}", file=sys.stderr)
    elif args.histogram:
        write_text(args.histogram, score_histogram([r.score for r in ok], reference=scorer.reference))
    fit = fit_gaussian([r.score for r in ok])
    if fit:
        print(f"iipa rank: {fit['n']} scores, fitted Gaussian mean {fit['mean']:.4f} std {fit['std']:.4f}",
              file=sys.stderr)
    for r in failed[:20]:
        print(f"iipa rank: {printable(r.source)}: {r.error}", file=sys.stderr)
    return coverage_code(len(results), len(failed))
