"""The paper's experiments at a size of your choosing (defaults fit a CPU with --backbone tiny).

  label-noise     Table 2: flip q% of the training labels (default q = 0,10,20,30,40)
  architectures   Table 3: the same schedule with other backbones
  baseline        §4.2 ablation: absolute IPA (image scalar + 6 context features -> MLP)

label-noise and architectures write OUT/results.csv, results.md and results.svg and one
resumable run folder per configuration; baseline writes OUT/baseline.json and baseline.pt.

examples:
  iipa experiment label-noise --pairs p.parquet --images img/ --out exp/noise --backbone tiny --pretrained none
  iipa experiment architectures --pairs p.parquet --images img/ --out exp/arch --profile small --epochs 2
  iipa experiment baseline --posts posts.parquet --pairs p.parquet --images img/ --out exp/abs
"""

from __future__ import annotations

import argparse
import json

from iipa.backends.device import prepare_long_cpu_work
from iipa.commands._common import coverage_exit
from iipa.commands.train import add_train_arguments, config_from_args
from iipa.constants import ARCHITECTURES, CROPS, NOISE_LEVELS
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "experiment"
HELP = "the paper's experiments: label-noise, architectures, baseline"


def _floats(text: str) -> list[float]:
    try:
        levels = [float(v) / 100 for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated percentages, got {text!r}") from None
    if not levels or not all(0 <= q <= 1 for q in levels):
        raise argparse.ArgumentTypeError(f"expected percentages between 0 and 100, got {text!r}")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    noise = sub.add_parser("label-noise", help="Table 2: accuracy vs flipped training labels")
    noise.add_argument("--levels", type=_floats, default=list(NOISE_LEVELS),
                       help="percentages, comma-separated (default 0,10,20,30,40)")
    arch = sub.add_parser("architectures", help="Table 3: accuracy per backbone")
    arch.add_argument("--backbones", default=",".join(ARCHITECTURES),
                      help=f"comma-separated (default {','.join(ARCHITECTURES)})")
    base = sub.add_parser("baseline", help="§4.2: absolute-IPA baseline on log likes")
    base.add_argument("--posts", required=True, help="posts table (.parquet, .csv, .jsonl) with likes and context")
    for p in (noise, arch, base):
        p.add_argument("--out", required=True, metavar="DIR", help="output folder")
        if p is not base:
            p.add_argument("--crops", type=int, default=1, choices=CROPS, help="test-time crops (default 1)")
        add_train_arguments(p)
        p.set_defaults(recipe="paper")  # the paper's experiments use the paper's recipe


def experiment_config(args: argparse.Namespace):
    """The TrainConfig of an experiment; an option the experiment would ignore is an error, whatever
    value it was given (the rule the recipes follow)."""
    from iipa.commands.train import given_options
    from iipa.train.config import RECIPES, refuse_given

    given = given_options(args)
    if args.experiment == "label-noise":
        refuse_given(given, RECIPES["paper"].used - {"label_noise"}, "`iipa experiment label-noise` (it sets --levels)")
    elif args.experiment == "architectures":
        refuse_given(given, RECIPES["paper"].used - {"backbone"}, "`iipa experiment architectures` (it sets --backbones)")
    else:
        from iipa.train.baseline import BASELINE_OPTIONS

        if args.recipe not in (None, "paper"):
            raise IIPAError("`iipa experiment baseline` trains with the paper recipe's schedule, not --recipe default")
        refuse_given(given, BASELINE_OPTIONS, "`iipa experiment baseline`")
        return config_from_args(args, posts=None)
    return config_from_args(args)


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa experiment")
    prepare_long_cpu_work()  # before torch loads
    from iipa.train import experiments
    from iipa.train.experiments import markdown_table

    config = experiment_config(args)
    if args.experiment == "label-noise":
        df = experiments.label_noise(config, args.out, levels=args.levels, crops=args.crops)
    elif args.experiment == "architectures":
        backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
        df = experiments.architectures(config, args.out, backbones=backbones, crops=args.crops)
    else:
        from iipa.train.baseline import run_baseline

        print(json.dumps(run_baseline(args.posts, config), indent=2))
        return 0
    print(markdown_table(df), end="")
    failed = df["name"][df["error"].fillna("").astype(str) != ""].tolist() if "error" in df else []
    return coverage_exit(NAME, total=len(df), failed=len(failed), what="runs", why="failed (see the error column)",
                         examples=failed)
