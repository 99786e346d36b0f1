"""The one typed training configuration and the table of recipes.

A recipe is a row: name -> defaults, the trainer class that runs it, the options it uses
and a description. A ``TrainConfig`` field a recipe does not use must stay unset (None),
so an option given to a recipe that would ignore it is an error naming the recipe, raised
before any work. ``to_dict()`` is saved with every checkpoint, so a run can be reproduced,
resumed and described without remembering its command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from iipa.constants import DECODES
from iipa.errors import IIPAError

# Fields every recipe uses.
COMMON = frozenset({
    "pairs", "images", "out", "recipe", "posts", "backbone", "pretrained", "profile", "domain", "seed",
    "device", "precision", "decode", "progress", "max_train_pairs", "max_val_pairs", "soft_labels",
    "overwrite", "extra",
})


# Fields whose command-line flag is not ``--field-name``.
FLAGS = {"hflip": "--no-hflip", "swap": "--no-swap", "channels_last": "--no-channels-last",
         "decode": "--draft-decode", "calibrate": "--no-calibrate"}


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class Recipe:
    """One row of :data:`RECIPES`."""

    name: str
    trainer: str  # "module:Class", imported when the run starts (the table is read without torch)
    defaults: dict[str, Any]
    options: frozenset[str]  # TrainConfig fields it uses besides COMMON
    description: str

    @property
    def used(self) -> frozenset[str]:
        return COMMON | self.options


# ``paper``: §4.1 exactly (Adam, two learning rates, x0.95 per epoch, batch 64, hard labels,
# random crops). ``default``: the small-data recipe of ``train/small.py`` (every within-user
# pair of the training users with soft labels, a linear probe on cached frozen features). Its
# backbone reads final + middle-stage features (lite.MultiStageLite): on instagram-dev that probe
# beat the final-feature probe in 5-fold CV by account (0.696 vs 0.684, three fold seeds).
# Features are computed in fp32, the precision scoring uses on the CPU (bf16 features moved
# Lite0's scaled scores by up to 8 points).
# Chosen in 5-fold CV by account on instagram-dev (benchmarks/calibration_cv.py, fold seeds 0
# and 1, 1,041 held-out PDIPs): the view count scoring averages by default, recorded in the
# model's profile (5 and 10 views were no better than 1: 0.690 / 0.692 vs 0.696, McNemar
# p >= 0.19), and the weight of the quality pairs (a photo beats its own blurred, darkened,
# over-compressed and thumbnail copies and flat frames): 0.1 put >= 97 % of held-out photos
# above each degraded copy and a black frame (63-81 % without) for 0.689 vs 0.696 accuracy;
# 0.3 cost 0.011 and 1.0 cost 0.025.
SCORE_CROPS = 1
QUALITY_WEIGHT = 0.1
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("default", "iipa.train.small:SmallDataTrainer",
           {"backbone": "efficientnet_lite0_ms", "soft_labels": True, "precision": "fp32", "views": 1,
            "hflip": True, "max_gap_days": 10.0, "min_pair_p": 0.5, "score_crops": SCORE_CROPS,
            "quality_pairs": QUALITY_WEIGHT, "quality_images": 2, "calibrate": True},
           frozenset({"views", "hflip", "probe_l2", "max_gap_days", "min_pair_p", "score_crops", "quality_pairs",
                      "quality_images", "calibrate"}),
           "small data: linear probe on cached frozen features (fp32, chunked, resumable)"),
    Recipe("paper", "iipa.train.loop:Trainer",
           {"backbone": "resnet50", "soft_labels": False, "precision": "auto", "epochs": 10, "batch_size": 64,
            "backbone_lr": 1e-5, "head_lr": 1e-4, "weight_decay": 1e-4, "lr_decay": 0.95, "swap": True,
            "label_noise": 0.0, "checkpoint_every": 200, "log_every": 10, "channels_last": True},
           frozenset({"epochs", "batch_size", "backbone_lr", "head_lr", "weight_decay", "lr_decay", "swap",
                      "label_noise", "max_steps", "checkpoint_every", "val_every", "log_every", "workers",
                      "channels_last"}),
           "paper §4.1: end-to-end Siamese fine-tuning (Adam, x0.95/epoch), resumable, DDP"),
)}
# Options that only say how a run is carried out: a resumption may change them.
RESUME_FREE = {"epochs", "max_steps", "workers", "progress", "device", "checkpoint_every",
               "log_every", "val_every", "out", "extra", "overwrite"}


def recipe_table() -> str:
    """The recipes as text, for ``iipa train --help``."""
    rows = []
    for r in RECIPES.values():
        flags = ", ".join(flag(o) for o in sorted(r.options))
        rows.append(f"  {r.name:8s} {r.description}\n           trainer {r.trainer.split(':')[1]}; "
                    f"defaults {', '.join(f'{k}={v}' for k, v in r.defaults.items())}\n           own options: {flags}")
    return "recipes:\n" + "\n".join(rows)


@dataclass
class TrainConfig:
    """A training run. Fields left None take the value of ``recipe`` (see ``RECIPES``); a field
    the recipe does not use must stay None."""

    pairs: str = ""  # empty with ``posts``: the pairs are built from the posts with the paper's rules
    images: str = ""
    out: str = ""
    recipe: str = "default"
    posts: str | None = None  # default recipe: every within-user pair of the training users; both: build pairs
    backbone: str | None = None
    pretrained: str = "imagenet"  # imagenet | none
    profile: str | None = None  # None: the backbone's own profile
    domain: str = "real"  # real photos | simulated (demo, rendered shapes): written into the card
    soft_labels: bool | None = None  # target = the pair's P instead of 1
    max_train_pairs: int | None = None
    max_val_pairs: int | None = 2000  # validation subset per evaluation (None: all)
    seed: int = 0
    device: str = "auto"
    precision: str | None = None  # auto | fp32 | bf16 | fp16
    decode: str | None = None  # exact | draft | None (the profile's own); the model's profile records it
    progress: bool | None = None  # None: when stderr is a terminal
    overwrite: bool = False  # replace a run folder that holds a run with other settings
    # default recipe
    views: int | None = None  # features: mean over this many Profile crop views (1, 5 or 10)
    hflip: bool | None = None  # also the mirrored image's features (averaged into the probe's)
    probe_l2: float | None = None  # None: chosen on validation users
    max_gap_days: float | None = None  # with --posts: largest upload gap of a derived pair
    min_pair_p: float | None = None  # with --posts: smallest P of a derived training pair (0.5: all)
    score_crops: int | None = None  # views scoring averages by default, recorded in the model's profile
    quality_pairs: float | None = None  # weight of the synthetic quality pairs (0: none)
    quality_images: int | None = None  # photos per training account given degraded copies
    calibrate: bool | None = None  # fit the temperature on held-out pairs and fold it into the model
    # paper recipe
    epochs: int | None = None
    batch_size: int | None = None  # pairs per step over all ranks
    backbone_lr: float | None = None
    head_lr: float | None = None
    weight_decay: float | None = None
    lr_decay: float | None = None
    swap: bool | None = None  # randomly present the more popular image as B (label 0)
    label_noise: float | None = None  # flip this fraction of the training labels (Table 2)
    max_steps: int | None = None
    checkpoint_every: int | None = None
    val_every: int | None = None
    log_every: int | None = None
    workers: int | None = None
    channels_last: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise IIPAError(f"--recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        recipe = RECIPES[self.recipe]
        unused = [f.name for f in dataclasses.fields(self)
                  if f.name not in recipe.used and getattr(self, f.name) is not None]
        if unused:
            raise IIPAError(f"recipe {self.recipe!r} does not use {', '.join(map(flag, unused))}; its own options: "
                            f"{', '.join(flag(o) for o in sorted(recipe.options))} "
                            "(`iipa train --help` shows the recipe table)")
        for key, value in recipe.defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self._check()

    def _check(self) -> None:
        if self.recipe == "paper" and self.pairs and self.posts:
            raise IIPAError("recipe 'paper' uses --posts only to build the pairs when --pairs is not given")
        if self.pretrained not in ("imagenet", "none"):
            raise IIPAError(f"--pretrained must be imagenet or none, not {self.pretrained!r}")
        if self.domain not in ("real", "simulated"):
            raise IIPAError(f"domain must be real or simulated, not {self.domain!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise IIPAError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.decode not in (None, *DECODES):
            raise IIPAError(f"decode must be one of {', '.join(DECODES)}, not {self.decode!r}")
        if self.views not in (None, 1, 5, 10):
            raise IIPAError(f"--views must be 1, 5 or 10, not {self.views}")
        if self.score_crops not in (None, 1, 5, 10):
            raise IIPAError(f"--score-crops must be 1, 5 or 10, not {self.score_crops}")
        if self.quality_pairs is not None and not self.quality_pairs >= 0:
            raise IIPAError(f"--quality-pairs must be >= 0, not {self.quality_pairs}")
        if self.quality_images is not None and self.quality_images < 1:
            raise IIPAError(f"--quality-images must be >= 1, not {self.quality_images}")
        if self.label_noise is not None and not 0.0 <= self.label_noise < 1.0:
            raise IIPAError(f"label noise must be in [0, 1), not {self.label_noise}")
        for name in ("batch_size", "checkpoint_every", "log_every", "epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise IIPAError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.probe_l2 is not None and not self.probe_l2 > 0:
            raise IIPAError(f"--probe-l2 must be > 0, not {self.probe_l2}")

    @property
    def trainer_path(self) -> str:
        return RECIPES[self.recipe].trainer

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "fast_decode" in d and "decode" not in d:  # configs saved before the decode field
            d["decode"] = "draft" if d.pop("fast_decode") else None
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def refuse_unused(config: TrainConfig, used: set[str] | frozenset[str], who: str) -> None:
    """An error naming ``who`` for every option of ``config`` that differs from the recipe's
    default but is not in ``used`` (for runs that use fewer options than the recipe)."""
    base = TrainConfig(recipe=config.recipe)
    fixed = {"pairs", "images", "out", "recipe", "extra", "posts"}
    given = [f.name for f in dataclasses.fields(config)
             if f.name not in used | fixed and getattr(config, f.name) != getattr(base, f.name)]
    if given:
        raise IIPAError(f"{who} does not use {', '.join(map(flag, given))}")


def resume_conflicts(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """Fields whose values differ from the interrupted run (resuming would mix two runs)."""
    current = now.to_dict()
    return [f"{k}: {saved[k]!r} -> {current[k]!r}" for k in current
            if k not in RESUME_FREE and k in saved and saved[k] != current[k]]
