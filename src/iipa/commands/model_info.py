"""Show a model card: architecture, preprocessing, where the weights come from, what the
score means, its range, the reference distribution, the 0-100 scale and the level edges,
calibration when recorded, training data, accuracy, baselines with their sources, limits, and
the training config and metrics stored with the weights: Markdown sections and tables
(--format json: the same facts as one JSON object).

--model is a checkpoint file, an exported .onnx file, or named weights (not downloaded for
this; default: the default model). The model may also be given without --model.

examples:
  iipa model-info --model run/best.pt
  iipa model-info --model authors-resnet50 --format json
"""

from __future__ import annotations

import argparse
import json

from iipa.commands._common import DEFAULT_MODEL

NAME = "model-info"
HELP = "model card: score meaning, range, reference, levels, training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help=f"checkpoint path, .onnx file or named weights (default: {DEFAULT_MODEL})")
    parser.add_argument("model_arg", nargs="?", metavar="MODEL", help="the same as --model")
    parser.add_argument("--format", "-f", choices=["text", "json"], default="text",
                        help="text (default) or json")


def run(args: argparse.Namespace) -> int:
    from iipa.errors import IIPAError
    from iipa.modelcard import format_card, model_card

    given = getattr(args.model, "name", args.model)  # check_args has replaced --model with its record
    if args.model and args.model_arg and given != args.model_arg:
        raise IIPAError(f"two models given: --model {given} and {args.model_arg}")
    card = model_card(args.model or args.model_arg or DEFAULT_MODEL)  # a record by now, or the positional name
    print(json.dumps(card, indent=2, default=str) if args.format == "json" else format_card(card))
    return 0
