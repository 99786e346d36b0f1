"""Train a popularity model on a pairs table with the paper's Siamese learning-to-rank loss.

Two recipes. `default` is made for small data (hundreds to tens of thousands of pairs):
EfficientNet-Lite0, a linear-probe warm start of the score head on frozen features, then the
top stages fine-tuned (low, depth-decayed learning rates, horizontal flips, EMA, early stopping
on the validation users), on every discriminable within-user pair of the training users with
soft labels when --posts gives the posts table. `paper` reproduces the paper's §4.1 settings
exactly (ResNet-50, Adam, backbone lr 1e-5, head lr 1e-4, x0.95 per epoch, batch 64, 10 epochs).

Writes RUN/best.pt (best validation pairwise accuracy), RUN/last.pt, RUN/train_state.pt
(resumable), RUN/metrics.jsonl and RUN/summary.json. Running the same command again
continues an interrupted run from its last checkpoint, and a finished one when --epochs
(or --max-steps) is larger than before. Several processes or GPUs:
`torchrun --nproc_per_node N -m iipa train ...` (gloo on CPUs, NCCL on GPUs).

examples:
  iipa train --pairs pairs.parquet --images images/ --posts posts.csv --out runs/small
  iipa train --pairs pairs.parquet --images images/ --out runs/r50 --recipe paper
  iipa train --pairs p.parquet --images img/ --out runs/t --recipe paper --backbone tiny --pretrained none --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os

from iipa.commands._common import (
    backbone_name,
    device_name,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_fraction,
)
from iipa.extras import require
from iipa.runtime import PRECISIONS
from iipa.train.config import RECIPES, TrainConfig

NAME = "train"
HELP = "train a model on PDIPs (Siamese learning to rank), resumable, DDP-ready"


def add_train_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Options shared with `iipa experiment` (which trains several models)."""
    d = TrainConfig()
    paper, small = RECIPES["paper"], RECIPES["default"]

    def both(key: str) -> str:
        return f"default recipe {small[key]}, paper {paper[key]}"

    g = parser.add_argument_group("data")
    g.add_argument("--recipe", default="default", choices=list(RECIPES),
                   help="default: small-data recipe; paper: the paper's §4.1 settings exactly (default: default)")
    g.add_argument("--pairs", required=required, help="pairs table (.parquet or .csv) with train/val splits")
    if "--posts" not in parser._option_string_actions:  # `experiment baseline` has its own, same meaning
        g.add_argument("--posts", help="default recipe: posts table the pairs were built from; trains on every "
                                       "discriminable within-user pair of the training users (users without val/test pairs)")
    g.add_argument("--max-gap-days", type=float, default=d.max_gap_days,
                   help=f"largest upload gap of a pair derived from --posts (default {d.max_gap_days:g})")
    g.add_argument("--min-pair-p", type=float, default=d.min_pair_p,
                   help=f"smallest discriminability P of a pair derived from --posts; 0.5 keeps every pair, "
                        f"soft labels weigh them (default {d.min_pair_p:g})")
    g.add_argument("--images", required=required, help="folder of <post_id>.<ext> images")
    g.add_argument("--max-train-pairs", type=positive_int, help="use at most this many training pairs")
    g.add_argument("--max-val-pairs", type=positive_int, default=d.max_val_pairs, help=f"validation subset (default {d.max_val_pairs})")
    g.add_argument("--workers", type=nonnegative_int, help="decoding processes (default: GPU half the CPUs, 1-4; CPU 0 up to 4 cores, else cores/8)")
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", type=backbone_name, help=both("backbone") + "; `iipa models` lists them")
    g.add_argument("--pretrained", default=d.pretrained, choices=["imagenet", "none"],
                   help="initialise from ImageNet weights (default) or at random")
    g.add_argument("--profile", help="preprocessing profile (default: the backbone's; `small` for 64 px)")
    g.add_argument("--domain", default=d.domain, choices=["real", "simulated"],
                   help="what the training images are, written into the model card (default real)")
    g = parser.add_argument_group("optimisation (defaults depend on --recipe)")
    g.add_argument("--epochs", type=positive_int, help=f"most epochs ({both('epochs')})")
    g.add_argument("--batch-size", type=positive_int,
                   help=f"paper: pairs per step over all ranks; default recipe: images per step ({both('batch_size')})")
    g.add_argument("--backbone-lr", type=float, help=both("backbone_lr"))
    g.add_argument("--head-lr", type=float, help=both("head_lr"))
    g.add_argument("--weight-decay", type=float, help=f"paper: Adam l2 penalty; default recipe: AdamW decay ({both('weight_decay')})")
    g.add_argument("--lr-decay", type=float, default=d.lr_decay, help=f"paper: per-epoch factor (default {d.lr_decay})")
    g.add_argument("--soft-labels", action=argparse.BooleanOptionalAction, default=None,
                   help="train on the pair's P instead of 0/1 (default recipe: on; paper: off)")
    g.add_argument("--tune-stages", type=int, default=d.tune_stages,
                   help=f"default recipe: stages fine-tuned from the top, 0 = linear probe only (default {d.tune_stages})")
    g.add_argument("--probe-l2", type=positive_float, default=None,
                   help="default recipe: L2 strength of the linear probe (default: chosen on validation users "
                        "from 0.1-10; 1 without them)")
    g.add_argument("--layer-decay", type=float, default=d.layer_decay,
                   help=f"default recipe: lr factor per stage below the top (default {d.layer_decay})")
    g.add_argument("--patience", type=positive_int, default=d.patience,
                   help=f"default recipe: epochs without progress on validation users before stopping (default {d.patience})")
    g.add_argument("--no-hflip", action="store_true", help="default recipe: no horizontal flips")
    g.add_argument("--no-swap", action="store_true", help="do not randomly swap the two sides")
    g.add_argument("--label-noise", type=unit_fraction, default=0.0, help="flip this fraction of training labels")
    g.add_argument("--max-steps", type=positive_int, help="stop after this many steps in total")
    g.add_argument("--seed", type=int, default=d.seed)
    g = parser.add_argument_group("running")
    g.add_argument("--device", default=d.device, type=device_name, help="auto, cpu, cuda (default auto)")
    g.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                   help="auto: bf16 autocast on CPUs with AVX512-BF16/AMX, AMP on GPUs")
    g.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format")
    g.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every, help=f"steps (default {d.checkpoint_every})")
    g.add_argument("--val-every", type=positive_int, help="also validate every N steps (default: each epoch)")
    g.add_argument("--log-every", type=positive_int, default=d.log_every, help=f"steps between metrics lines (default {d.log_every})")
    g.add_argument("--draft-decode", action="store_true",
                   help="decode JPEGs with DCT draft scaling (faster); the model's profile records it, "
                        "so scoring decodes the same way (default: the profile's exact decoding)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    values = dict(
        pairs=args.pairs, images=args.images, out=getattr(args, "out", "") or "", backbone=args.backbone,
        recipe=args.recipe, posts=args.posts, max_gap_days=args.max_gap_days, domain=args.domain,
        min_pair_p=args.min_pair_p,
        tune_stages=args.tune_stages, probe_l2=args.probe_l2, layer_decay=args.layer_decay, patience=args.patience, hflip=not args.no_hflip,
        pretrained=args.pretrained, profile=args.profile, epochs=args.epochs, batch_size=args.batch_size,
        backbone_lr=args.backbone_lr, head_lr=args.head_lr, weight_decay=args.weight_decay,
        lr_decay=args.lr_decay, soft_labels=args.soft_labels, swap=not args.no_swap,
        label_noise=args.label_noise, max_steps=args.max_steps, max_train_pairs=args.max_train_pairs,
        max_val_pairs=args.max_val_pairs, checkpoint_every=args.checkpoint_every, val_every=args.val_every,
        log_every=args.log_every, workers=args.workers, device=args.device, precision=args.precision,
        channels_last=not args.no_channels_last, seed=args.seed, decode="draft" if args.draft_decode else None,
        progress=args.progress,
    )
    values.update(overrides)
    return TrainConfig(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (created; an existing run is resumed)")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa train")
    from iipa.train import train

    summary = train(config_from_args(args))
    if os.environ.get("RANK", "0") == "0":  # one summary under torchrun, not one per rank
        print(json.dumps(summary, indent=2))
    return 0
