"""Run the whole paper pipeline offline on a simulated social network and write a report.

simulate → build PDIPs → render images → train (EfficientNet-Lite0, packaged ImageNet
weights, frozen features + probe, CPU) → evaluate → absolute-likes baseline → DIR/report.html
+ DIR/metrics.json. Its CPU and wall time are in the README; `--quick` takes seconds.
"""

from __future__ import annotations

import argparse

from iipa.backends.device import prepare_long_cpu_work
from iipa.commands._common import backbone_name, positive_int
from iipa.extras import require

NAME = "demo"
HELP = "offline end-to-end demo on a simulated social network (report.html)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from iipa.demo import DemoConfig

    d = DemoConfig()
    parser.add_argument("--out", default=d.out, metavar="DIR", help=f"output folder (default: {d.out})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--users", type=positive_int, default=d.users)
    parser.add_argument("--posts-per-user", type=positive_int, default=d.posts_per_user)
    parser.add_argument("--recipe", default=d.recipe, choices=["default", "paper"],
                        help="how the ranker is trained (see `iipa train --help`; default: default)")
    parser.add_argument("--epochs", type=positive_int, help="paper recipe: epochs (default 10)")
    parser.add_argument("--image-size", type=positive_int, default=d.image_size, help="rendered image size in px")
    parser.add_argument("--backbone", type=backbone_name, help=f"`iipa models` lists them (default: {d.backbone})")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (steps, ETA) within each training stage (default: when stderr is a terminal)")
    parser.add_argument("--quick", action="store_true", help="tiny backbone and sizes: a smoke run in seconds")


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa demo")
    prepare_long_cpu_work()  # before torch loads
    from iipa.demo import DemoConfig, run_demo

    defaults = DemoConfig()
    sizes = dict(seed=args.seed, users=args.users, posts_per_user=args.posts_per_user, epochs=args.epochs, recipe=args.recipe,
                 image_size=args.image_size, backbone=args.backbone or defaults.backbone, progress=args.progress)
    if args.quick:
        changed = {k: v for k, v in sizes.items() if v != getattr(defaults, k)}
        config = DemoConfig.quick(args.out, **changed)
    else:
        config = DemoConfig(out=args.out, **sizes)
    run_demo(config)
    return 0
