"""Grad-CAM heatmaps (paper Fig. 7): which regions raise each image's score.

For every image, writes OUT/<name>.gradcam.png: the heatmap blended on the image, at the
image's original size (warm = raises the score; 0 outside the centre crop the model sees).
--raw adds <name>.heatmap.npy (float32 H x W in [0, 1]) and <name>.heatmap.png (8-bit).
--pair A B explains the difference f(A) - f(B): A's regions that raise f(A) and B's
regions that lower f(B); writes both overlays and a side-by-side <A>-vs-<B>.pair.png.
Prints path, score, scaled, level, overlay (and error). Exit 1 when some images failed.

examples:
  iipa explain photos/ --out heatmaps/ --model run/best.pt
  iipa explain winner.jpg loser.jpg --pair --out why/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iipa.commands._common import (
    add_scoring_arguments,
    add_table_output_arguments,
    make_scorer_from_args,
    unit_fraction,
)
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "explain"
HELP = "Grad-CAM heatmaps of scores (and of a pair's score difference)"
COLUMNS = ("path", "score", "scaled", "level", "overlay", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, folders, globs, .txt or .csv lists; - reads paths from stdin")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays (created)")
    add_scoring_arguments(parser)
    parser.add_argument("--alpha", type=unit_fraction, default=0.5, help="heatmap opacity in the overlay (0-1, default 0.5)")
    parser.add_argument("--raw", action="store_true", help="also save the raw heatmaps (.npy and grey .png)")
    parser.add_argument("--pair", action="store_true", help="explain f(A) - f(B) for exactly two images A B")
    add_table_output_arguments(parser)


def _stems(paths: list[str]) -> list[str]:
    """File stems, made unique (a.jpg in two folders -> a, a-2)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def _row(path: str, expl, reference, overlay: Path) -> dict:
    from iipa import levels

    return {"path": path, **levels.describe(expl.score, reference), "overlay": str(overlay), "error": None}


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa explain")
    from iipa.explain import explain, explain_pair, pair_figure, save_explanation, save_png
    from iipa.inputs import expand_inputs
    from iipa.output import infer_format, open_output, write_rows
    fmt = infer_format(args.output, args.format)
    paths = expand_inputs(args.inputs)
    if not paths:
        raise IIPAError("no image files found in " + ", ".join(args.inputs))
    if args.pair and len(paths) != 2:
        raise IIPAError(f"--pair needs exactly two images, got {len(paths)}")
    # Scores come from the Scorer, so they are the ones `iipa score` prints for these images;
    # the heatmaps from the model's PyTorch weights (Grad-CAM needs gradients).
    scorer = make_scorer_from_args(args)
    reason = scorer.record.heatmaps_unavailable()
    if reason:
        raise IIPAError(reason)
    reference = scorer.reference
    stems = _stems(paths)
    rows: list[dict] = []
    if args.pair:
        pair = explain_pair(scorer, paths[0], paths[1])
        for path, stem, side in zip(paths, stems, (pair.a, pair.b), strict=True):
            saved = save_explanation(side, args.out, f"{stem}.pair", alpha=args.alpha, raw=args.raw)
            rows.append(_row(path, side, reference, saved["overlay"]))
        save_png(pair_figure(pair, alpha=args.alpha), Path(args.out) / f"{stems[0]}-vs-{stems[1]}.pair.png")
    else:
        for path, stem in zip(paths, stems, strict=True):
            try:
                expl = explain(scorer, path)
            except IIPAError as exc:
                rows.append({"path": path, "error": getattr(exc, "reason", None) or str(exc)})
                continue
            saved = save_explanation(expl, args.out, stem, alpha=args.alpha, raw=args.raw)
            rows.append(_row(path, expl, reference, saved["overlay"]))
    with open_output(args.output) as fh:
        write_rows(rows, COLUMNS, fmt, fh)
    failed = [r for r in rows if r.get("error")]
    for r in failed[:20]:
        print(f"iipa explain: {r['path']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
