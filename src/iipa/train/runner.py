"""One training run, whatever its recipe: lock the folder, check its settings, build the pairs
from posts when none are given, run the recipe's trainer, and (for the command) write the
ONNX companion and say how to score with the result."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

from iipa.errors import IIPAError
from iipa.train.base import RecipeTrainer
from iipa.train.config import TrainConfig, resume_conflicts

SETTINGS = "run.json"  # the options of the run that made the folder
BUILT_PAIRS = "pairs"  # OUT/pairs/: pairs built from --posts when --pairs is not given
VAL_USERS = "0.2"  # share of the pairs held out, by whole users, when the pairs are built here
# Files and folders a run writes (``--overwrite`` removes them, nothing else).
RUN_FILES = ("best.pt", "last.pt", "train_state.pt", "metrics.jsonl", "summary.json", "best.onnx", SETTINGS,
             "features", BUILT_PAIRS)


class SettingsConflict(IIPAError):
    """The run folder holds a run with other settings."""


def trainer_class(config: TrainConfig) -> type[RecipeTrainer]:
    module, _, name = config.trainer_path.partition(":")
    return getattr(importlib.import_module(module), name)


def check_run_folder(config: TrainConfig) -> None:
    """Refuse a folder holding a run with other settings (exit 2), or clear it with ``overwrite``."""
    import json

    out = Path(config.out)
    path = out / SETTINGS
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise IIPAError(f"{path}: not readable ({exc}); delete the folder or pass --overwrite") from None
    conflicts = resume_conflicts(saved, config)
    if not conflicts:
        return
    if not config.overwrite:
        raise SettingsConflict(f"{out}: holds a run with other settings ({'; '.join(conflicts)}); use another --out, "
                               "the same options to resume, or --overwrite to replace it")
    for name in RUN_FILES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def pairs_from_posts(config: TrainConfig) -> TrainConfig:
    """``config`` with ``pairs`` built from ``posts`` into OUT/pairs/ (the paper's rules, the
    validation users held out by user), reusing an earlier build of the same run."""
    if config.pairs:
        return config
    from iipa.pairs.build import build_pairs

    target = Path(config.out) / BUILT_PAIRS
    pairs = target / "pairs.parquet"
    if not pairs.is_file():
        built = build_pairs(config.posts, target, seed=config.seed, val=VAL_USERS, test=0, split_by_user=True,
                            overwrite=True)
        n = len(built.pairs)
        print(f"iipa train: built {n} pairs from {config.posts} into {target} (the paper's rules; "
              f"{VAL_USERS} of them held out by user for validation)", file=sys.stderr, flush=True)
    return config.replace(pairs=str(pairs))


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) the run in ``config.out``; returns the result record (summary.json)."""
    from iipa.fileio import write_json
    from iipa.train.lock import launched_rank, run_lock

    if not (config.pairs or config.posts):
        raise IIPAError("give --pairs (a pairs table) or --posts (pairs are then built with the paper's rules)")

    with run_lock(config.out):  # one run per folder: a second one exits 2 naming the holder
        # A RANK without the rest of a torchrun launch trains as one process, and writes what one does.
        main = launched_rank() == 0
        if main:
            check_run_folder(config)
            write_json(Path(config.out) / SETTINGS, config.to_dict())
        run_config = pairs_from_posts(config) if main else config.replace(
            pairs=config.pairs or str(Path(config.out) / BUILT_PAIRS / "pairs.parquet"))
        return trainer_class(run_config)(run_config).run()


def write_companions(summary: dict[str, Any]) -> list[str]:
    """The ONNX companion of best.pt (same weights, profile and card facts) and the lines that
    say how to use them."""
    from iipa.model.export import export_onnx
    from iipa.model.record import load_model

    best = Path(summary["best"])
    onnx = best.with_suffix(".onnx")
    try:
        export_onnx(load_model(str(best)), onnx)
    except IIPAError as exc:  # the onnx package is an optional extra
        return [f"model: {best}; no ONNX companion ({exc})", f"score with: iipa score --model {best} PHOTOS..."]
    return [f"model: {best} (ONNX: {onnx}); card: iipa model-info --model {best}",
            f"score with: iipa score --model {best} PHOTOS...  (or --model {onnx}: no torch needed)"]
