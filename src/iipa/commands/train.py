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
import dataclasses
import json
import sys

from iipa.backends.device import prepare_long_cpu_work
from iipa.commands._common import (
    backbone_name,
    device_name,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_fraction,
)
from iipa.extras import require
from iipa.train.config import RECIPES, TrainConfig, flag, recipe_table

# The argument types a declaration may name.
TYPES = {"int": int, "float": float, "positive_int": positive_int, "nonnegative_int": nonnegative_int,
         "positive_float": positive_float, "nonnegative_float": nonnegative_float, "unit_fraction": unit_fraction,
         "backbone_name": backbone_name, "device_name": device_name}

NAME = "train"
HELP = "train a model on PDIPs (Siamese learning to rank), resumable, DDP-ready"


GROUPS = ("data", "model", "default recipe", "paper recipe", "both recipes")


def _help(name: str, meta: dict) -> str:
    defaults = {r: RECIPES[r].defaults.get(name) for r in RECIPES}
    own = meta["recipes"][0]
    return meta["help"].format(own=f"{own} recipe" + (f" (default {defaults[own]})" if defaults[own] is not None
                                                      else ""),
                               both=f"default recipe {defaults['default']}, paper {defaults['paper']}",
                               default=defaults[own])


def add_train_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The options declared in ``TrainConfig`` (``iipa.train.config.option``), shared with
    `iipa experiment`. Every one defaults to None, so what was given explicitly is known, and
    ``TrainConfig`` supplies the defaults."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata["option"]
        if meta["kind"] == "none" or flag(f.name) in parser._option_string_actions:
            continue  # set elsewhere (--out), or the command has its own (experiment baseline's --posts)
        recipes = meta["recipes"]
        group = meta["group"] or ("both recipes" if len(recipes) > 1 else f"{recipes[0]} recipe")
        kw: dict = {"dest": f.name, "default": None, "help": _help(f.name, meta)}
        if meta["kind"] == "negate":
            kw.update(action="store_const", const=False)
        elif meta["kind"] == "switch":
            kw.update(action="store_const", const=True)
        elif meta["kind"] == "draft":
            kw.update(action="store_const", const="draft")
        elif meta["kind"] == "bool":
            kw.update(action=argparse.BooleanOptionalAction)
        else:
            if meta["type"]:
                kw["type"] = TYPES[meta["type"]]
            if meta["choices"]:
                kw["choices"] = list(meta["choices"])
        if f.name == "images":
            kw["required"] = required
        groups[group].add_argument(flag(f.name), **kw)


def given_options(args: argparse.Namespace) -> set[str]:
    """The TrainConfig fields given explicitly on the command line."""
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    values = {name: getattr(args, name) for name in given_options(args)}
    values["out"] = getattr(args, "out", "") or ""
    values.update(overrides)
    return TrainConfig(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (parser.description or "") + "\n" + recipe_table()
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (created; an existing run is resumed)")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa train")
    prepare_long_cpu_work()  # before torch loads
    from iipa.train.lock import launched_rank
    from iipa.train.runner import train, write_companions

    summary = train(config_from_args(args))
    if launched_rank() != 0:  # one summary under torchrun, not one per rank
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
