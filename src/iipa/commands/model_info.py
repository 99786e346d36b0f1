"""Show a model card: architecture, preprocessing, where the weights come from, what the
score means, its range, the reference distribution, the 0-100 scale and the level edges,
and the training config and metrics stored with the weights.

M is a checkpoint file, an exported .onnx file, or named weights (not downloaded for this).

examples:
  iipa model-info run/best.pt
  iipa model-info authors-resnet50 --json
"""

from __future__ import annotations

import argparse
import json

from iipa.modelcard import format_card, model_card

NAME = "model-info"
HELP = "model card: score meaning, range, reference, levels, training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="M", help="checkpoint path, .onnx file or named weights")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")


def run(args: argparse.Namespace) -> int:
    card = model_card(args.model)
    print(json.dumps(card, indent=2, default=str) if args.json else format_card(card))
    return 0
