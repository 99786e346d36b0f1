"""Train a popularity model (Siamese learning to rank, paper eq. 7-9) from a pairs table, or
from a posts table whose pairs are built here with the paper's rules.

Two recipes (table below). `default` is made for small data (hundreds to tens of thousands of
pairs): a linear probe on frozen EfficientNet-Lite0 features, computed once in fp32 and cached
in the run folder in fixed chunks (a killed run resumes without re-extracting), on every
discriminable within-user pair of the training users with soft labels when --posts is given.
`paper` reproduces the paper's §4.1 settings exactly (ResNet-50, Adam, backbone lr 1e-5, head
lr 1e-4, x0.95 per epoch, batch 64, 10 epochs), resumable mid-epoch from RUN/train_state.pt.
An option the chosen recipe does not use is an error (exit 2). Pairs whose image is missing
are left out, counted, and make the exit code 1.

Writes RUN/best.pt (its card: training data, held-out estimate, limits), RUN/best.onnx,
RUN/last.pt, RUN/metrics.jsonl, RUN/summary.json and RUN/run.json (the settings). Running the
same command again resumes; a folder holding a run with other settings is refused unless
--overwrite. Several processes or GPUs (paper recipe):
`torchrun --nproc_per_node N -m iipa train ...` (gloo on CPUs, NCCL on GPUs).

examples:
  iipa train --posts posts.csv --images images/ --out runs/mine          # posts to model
  iipa train --pairs pairs.parquet --images images/ --posts posts.csv --out runs/small
  iipa train --pairs pairs.parquet --images images/ --out runs/r50 --recipe paper
  iipa train --pairs p.parquet --images img/ --out runs/t --recipe paper --backbone tiny --pretrained none --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from iipa.commands._common import (
    CROPS,
    backbone_name,
    device_name,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_fraction,
)
from iipa.extras import require
from iipa.runtime import PRECISIONS, prepare_long_cpu_work
from iipa.train.config import RECIPES, TrainConfig, recipe_table

NAME = "train"
HELP = "train a model on PDIPs (Siamese learning to rank), resumable, DDP-ready"


def add_train_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Options shared with `iipa experiment` (which trains several models). Options of one recipe
    default to None: the recipe fills them, and the other recipe refuses them."""
    d = TrainConfig()
    paper, small = RECIPES["paper"].defaults, RECIPES["default"].defaults

    def own(name: str, key: str | None = None) -> str:
        table = paper if name == "paper" else small
        return f"{name} recipe" + (f" (default {table[key]})" if key else "")

    def both(key: str) -> str:
        return f"default recipe {small[key]}, paper {paper[key]}"

    g = parser.add_argument_group("data")
    g.add_argument("--recipe", default="default", choices=list(RECIPES),
                   help="see the recipe table above (default: default)")
    g.add_argument("--pairs", help="pairs table (.parquet or .csv) with train/val splits (else built from --posts)")
    if "--posts" not in parser._option_string_actions:  # `experiment baseline` has its own, same meaning
        g.add_argument("--posts", help="posts table: builds the pairs when --pairs is not given (paper rules, a fifth "
                                       "of the users held out); default recipe: also trains on every discriminable "
                                       "within-user pair of the training users")
    g.add_argument("--max-gap-days", type=float, help=own("default", "max_gap_days") + ": largest upload gap of a "
                                                           "pair derived from --posts")
    g.add_argument("--min-pair-p", type=float, help=own("default", "min_pair_p") + ": smallest P of a pair derived "
                                                         "from --posts (0.5 keeps every pair, soft labels weigh them)")
    g.add_argument("--images", required=required, help="folder of <post_id>.<ext> images")
    g.add_argument("--max-train-pairs", type=positive_int, help="use at most this many training pairs")
    g.add_argument("--max-val-pairs", type=positive_int, default=d.max_val_pairs, help=f"validation subset (default {d.max_val_pairs})")
    g.add_argument("--workers", type=nonnegative_int, help=own("paper") + ": decoding processes (default: GPU half "
                                                                          "the CPUs, 1-4; CPU 0 up to 4 cores, else cores/8)")
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", type=backbone_name, help=both("backbone") + "; `iipa models` lists them")
    g.add_argument("--pretrained", default=d.pretrained, choices=["imagenet", "none"],
                   help="initialise from ImageNet weights (default) or at random")
    g.add_argument("--profile", help="preprocessing profile (default: the backbone's; `small` for 64 px)")
    g.add_argument("--domain", default=d.domain, choices=["real", "simulated"],
                   help="what the training images are, written into the model card (default real)")
    g = parser.add_argument_group("default recipe")
    g.add_argument("--views", type=int, choices=CROPS, help="features: mean over 1, 5 or 10 test-time crop views "
                                                            f"(default {small['views']})")
    g.add_argument("--probe-l2", type=positive_float, help="L2 strength of the linear probe (default: chosen on "
                                                           "validation users from 0.1-10; 1 without them)")
    g.add_argument("--score-crops", type=int, choices=CROPS,
                   help=f"views scoring averages by default, recorded in the model's profile (default {small['score_crops']})")
    g.add_argument("--quality-pairs", type=nonnegative_float,
                   help="weight of the quality pairs: a photo beats its own blurred, darkened, over-compressed and "
                        f"thumbnail copies and flat frames (0: none; default {small['quality_pairs']})")
    g.add_argument("--quality-images", type=positive_int,
                   help=f"photos per training account given degraded copies (default {small['quality_images']})")
    g.add_argument("--no-calibrate", dest="calibrate", action="store_const", const=False,
                   help="do not fit the temperature of P = logistic(f(A) - f(B)) on held-out pairs")
    g.add_argument("--no-hflip", dest="hflip", action="store_const", const=False,
                   help="no mirrored features (default: the probe trains on the mean of both)")
    g = parser.add_argument_group("paper recipe")
    g.add_argument("--epochs", type=positive_int, help=own("paper", "epochs"))
    g.add_argument("--batch-size", type=positive_int, help=own("paper", "batch_size") + ": pairs per step over all ranks")
    g.add_argument("--backbone-lr", type=float, help=own("paper", "backbone_lr"))
    g.add_argument("--head-lr", type=float, help=own("paper", "head_lr"))
    g.add_argument("--weight-decay", type=float, help=own("paper", "weight_decay") + ": Adam's l2 penalty")
    g.add_argument("--lr-decay", type=float, help=own("paper", "lr_decay") + ": factor per epoch")
    g.add_argument("--no-swap", dest="swap", action="store_const", const=False,
                   help="do not randomly swap the two sides")
    g.add_argument("--label-noise", type=unit_fraction, help="flip this fraction of training labels (default 0)")
    g.add_argument("--max-steps", type=positive_int, help="stop after this many steps in total")
    g.add_argument("--checkpoint-every", type=positive_int, help=own("paper", "checkpoint_every") + ": steps")
    g.add_argument("--val-every", type=positive_int, help="also validate every N steps (default: each epoch)")
    g.add_argument("--log-every", type=positive_int, help=own("paper", "log_every") + ": steps between metrics lines")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False,
                   help="keep NCHW memory format")
    g = parser.add_argument_group("both recipes")
    g.add_argument("--soft-labels", action=argparse.BooleanOptionalAction, default=None,
                   help=f"train on the pair's P instead of 0/1 ({both('soft_labels')})")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, type=device_name, help="auto, cpu, cuda (default auto)")
    g.add_argument("--precision", choices=PRECISIONS,
                   help=f"{both('precision')}; auto: bf16 autocast on CPUs with AVX512-BF16/AMX, AMP on GPUs")
    g.add_argument("--draft-decode", action="store_true",
                   help="decode JPEGs with DCT draft scaling (faster); the model's profile records it, "
                        "so scoring decodes the same way (default: the profile's exact decoding)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace a run folder that holds a run with other settings (default: refuse, exit 2)")


# TrainConfig field -> the parsed argument that sets it (the same name unless listed)
ARG_NAMES = {"decode": "draft_decode"}
SKIPPED = {"out", "extra"}


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    import dataclasses

    values = {f.name: getattr(args, ARG_NAMES.get(f.name, f.name)) for f in dataclasses.fields(TrainConfig)
              if f.name not in SKIPPED}
    values["out"] = getattr(args, "out", "") or ""
    values["pairs"] = values["pairs"] or ""
    values["decode"] = "draft" if values["decode"] else None  # --draft-decode, else the profile's own
    values.update(overrides)
    return TrainConfig(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (parser.description or "") + "\n" + recipe_table()
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (created; an existing run is resumed)")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa train")
    prepare_long_cpu_work()  # before torch loads
    from iipa.train.runner import train, write_companions

    summary = train(config_from_args(args))
    if os.environ.get("RANK", "0") != "0":  # one summary under torchrun, not one per rank
        return 0
    for line in write_companions(summary):
        print(f"iipa train: {line}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return _dropped_pairs(summary, args.images)


def _dropped_pairs(summary: dict, images: str) -> int:
    """Exit 1 (with a line) when pairs were left out because an image is missing: the model
    rests on part of the pairs (a run with none fails before training)."""
    dropped = summary.get("dropped_missing_images") or summary.get("data", {}).get("dropped_missing_images") or {}
    n = sum(dropped.values())
    if not n:
        return 0
    parts = ", ".join(f"{k} {v:,}" for k, v in dropped.items() if v)
    print(f"iipa train: {n:,} pairs lack an image in {images} and were left out ({parts}); the model rests on "
          "the other pairs", file=sys.stderr)
    return 1
