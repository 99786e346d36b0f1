"""The one typed training configuration and the table of recipes.

A recipe is a row: name -> defaults, the trainer class that runs it and a description. Each
``TrainConfig`` field is declared once (:func:`option`): its flag, help, the recipes that use
it and whether a resumed run may change it; the CLI's argument groups, the recipes' option
sets, the refusal rule and the resume rule are read from those declarations. A field a recipe
does not use must stay unset (None), so an option given to a recipe that would ignore it is an
error naming the recipe, raised before any work, whatever value it was given. ``to_dict()`` is saved with every checkpoint, so a run can be reproduced,
resumed and described without remembering its command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iipa.constants import DECODES, PRECISIONS
from iipa.errors import IIPAError
from iipa.pairs.rules import PAPER

BOTH = ("default", "paper")


def option(default: Any = None, *, help: str, recipes: tuple[str, ...] = BOTH, group: str | None = None,
           kind: str = "value", type: str | None = None, choices: tuple | None = None, flag: str | None = None,
           resume_free: bool = False, names_run: bool = False) -> Any:
    """A TrainConfig field declared once: its command-line flag, help, the recipes that use it,
    whether a resumed run may change it (``resume_free``) and whether it names the run rather
    than configures it (``names_run``: data paths, the recipe). ``kind``: ``value`` (``--x V``,
    parsed by the ``type`` named in :mod:`iipa.commands._common`), ``negate`` (``--no-x``
    stores False), ``bool`` (``--x/--no-x``), ``switch`` (``--x`` stores True) or ``draft``
    (``--draft-decode`` stores "draft"). ``iipa train``'s and ``iipa experiment``'s parsers,
    the recipes' option sets, the refusal rule and the resume rule are all read from these."""
    meta = dict(help=help, recipes=recipes, group=group, kind=kind, type=type, choices=choices, flag=flag,
                resume_free=resume_free, names_run=names_run)
    return field(default=default, metadata={"option": meta})


def declared(name: str) -> dict[str, Any]:
    """The declaration of TrainConfig field ``name`` (see :func:`option`)."""
    return _FIELDS[name].metadata["option"]


def flag(name: str) -> str:
    meta = declared(name)
    if meta["flag"]:
        return meta["flag"]
    return ("--no-" if meta["kind"] == "negate" else "--") + name.replace("_", "-")


@dataclass(frozen=True)
class Recipe:
    """One row of :data:`RECIPES`. The options it uses are those whose declaration names it."""

    name: str
    trainer: str  # "module:Class", imported when the run starts (the table is read without torch)
    defaults: dict[str, Any]
    description: str

    @property
    def used(self) -> frozenset[str]:
        return frozenset(f.name for f in _FIELDS.values() if self.name in f.metadata["option"]["recipes"])

    @property
    def options(self) -> frozenset[str]:
        """The options only this recipe uses."""
        return frozenset(n for n in self.used if declared(n)["recipes"] == (self.name,))


# ``paper``: §4.1 exactly (Adam, two learning rates, x0.95 per epoch, batch 64, hard labels,
# random crops). ``default``: the small-data recipe of ``train/small.py`` (every within-user
# pair of the training users with soft labels, a linear probe on cached frozen features), its
# choices made by cross-validation by account on real photos (docs/training.md). Its features
# are computed in fp32, the precision scoring uses on the CPU, so the probe is fitted on the
# numbers scoring will compute: the recipe refuses any other precision.
SCORE_CROPS = 1
QUALITY_WEIGHT = 0.1
FEATURE_PRECISION = "fp32"
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("default", "iipa.train.small:SmallDataTrainer",
           {"backbone": "efficientnet_lite0_ms", "soft_labels": True, "precision": FEATURE_PRECISION, "views": 1,
            "hflip": True, "max_gap_days": PAPER.max_gap_days, "min_pair_p": 0.5, "score_crops": SCORE_CROPS,
            "quality_pairs": QUALITY_WEIGHT, "quality_images": 2, "calibrate": True},
           "small data: linear probe on cached frozen features (fp32, chunked, resumable)"),
    Recipe("paper", "iipa.train.loop:Trainer",
           {"backbone": "resnet50", "soft_labels": False, "precision": "auto", "epochs": 10, "batch_size": 64,
            "backbone_lr": 1e-5, "head_lr": 1e-4, "weight_decay": 1e-4, "lr_decay": 0.95, "swap": True,
            "label_noise": 0.0, "checkpoint_every": 200, "log_every": 10, "channels_last": True},
           "paper §4.1: end-to-end Siamese fine-tuning (Adam, x0.95/epoch), resumable, DDP"),
)}
DEFAULT, PAPER = ("default",), ("paper",)


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
    the recipe does not use must stay None. Every field is declared once with :func:`option`;
    ``help`` may name ``{own}`` (the recipe and its default), ``{both}`` (both recipes'
    defaults) or ``{default}`` (the recipe's default)."""

    pairs: str = option("", names_run=True, group="data",
                        help="pairs table (.parquet or .csv) with train/val splits (else built from --posts)")
    images: str = option("", names_run=True, group="data", help="folder of <post_id>.<ext> images")
    out: str = option("", names_run=True, resume_free=True, kind="none", help="run folder")
    recipe: str = option("default", names_run=True, group="data", choices=tuple(RECIPES),
                         help="see the recipe table above (default: default)")
    posts: str | None = option(names_run=True, group="data",
                               help="posts table: builds the pairs when --pairs is not given (paper rules, a fifth "
                                    "of the users held out); default recipe: also trains on every discriminable "
                                    "within-user pair of the training users")
    backbone: str | None = option(group="model", type="backbone_name", help="{both}; `iipa models` lists them")
    pretrained: str = option("imagenet", group="model", choices=("imagenet", "none"),
                             help="initialise from ImageNet weights (default) or at random")
    profile: str | None = option(group="model", help="preprocessing profile (default: the backbone's; `small` for 64 px)")
    domain: str = option("real", group="model", choices=("real", "simulated"),
                         help="what the training images are, written into the model card (default real)")
    soft_labels: bool | None = option(kind="bool", help="train on the pair's P instead of 0/1 ({both})")
    max_train_pairs: int | None = option(group="data", type="positive_int", help="use at most this many training pairs")
    max_val_pairs: int | None = option(2000, group="data", type="positive_int", help="validation subset (default 2000)")
    seed: int = option(0, type="int", help="seeds everything (default 0)")
    device: str = option("auto", type="device_name", resume_free=True, help="auto, cpu, cuda (default auto)")
    precision: str | None = option(choices=PRECISIONS,
                                   help="{both}; paper: auto is bf16 autocast on CPUs with AVX512-BF16/AMX, AMP on "
                                        "GPUs; the default recipe computes its features in the precision scoring "
                                        "uses and refuses any other")
    decode: str | None = option(kind="draft", flag="--draft-decode",
                                help="decode JPEGs with DCT draft scaling (faster); the model's profile records it, so "
                                     "scoring decodes the same way (default: the profile's exact decoding)")
    progress: bool | None = option(kind="bool", resume_free=True,
                                   help="progress bars on stderr (default: when stderr is a terminal)")
    overwrite: bool = option(False, kind="switch", resume_free=True,
                             help="replace a run folder that holds a run with other settings (default: refuse, exit 2)")
    # default recipe
    views: int | None = option(recipes=DEFAULT, choices=(1, 5, 10), type="int",
                               help="features: mean over 1, 5 or 10 test-time crop views (default {default})")
    hflip: bool | None = option(recipes=DEFAULT, kind="negate",
                                help="no mirrored features (default: the probe trains on the mean of both)")
    probe_l2: float | None = option(recipes=DEFAULT, type="positive_float",
                                    help="L2 strength of the linear probe (default: chosen on validation users from "
                                         "0.1-10; 1 without them)")
    max_gap_days: float | None = option(recipes=DEFAULT, group="data", type="float",
                                        help="{own}: largest upload gap of a pair derived from --posts")
    min_pair_p: float | None = option(recipes=DEFAULT, group="data", type="float",
                                      help="{own}: smallest P of a pair derived from --posts (0.5 keeps every pair, "
                                           "soft labels weigh them)")
    score_crops: int | None = option(recipes=DEFAULT, choices=(1, 5, 10), type="int",
                                     help="views scoring averages by default, recorded in the model's profile "
                                          "(default {default})")
    quality_pairs: float | None = option(recipes=DEFAULT, type="nonnegative_float",
                                         help="weight of the quality pairs: a photo beats its own blurred, darkened, "
                                              "over-compressed and thumbnail copies and flat frames (0: none; "
                                              "default {default})")
    quality_images: int | None = option(recipes=DEFAULT, type="positive_int",
                                        help="photos per training account given degraded copies (default {default})")
    calibrate: bool | None = option(recipes=DEFAULT, kind="negate",
                                    help="do not fit the temperature of P = logistic(f(A) - f(B)) on held-out pairs")
    # paper recipe
    epochs: int | None = option(recipes=PAPER, type="positive_int", resume_free=True, help="{own}")
    batch_size: int | None = option(recipes=PAPER, type="positive_int", help="{own}: pairs per step over all ranks")
    backbone_lr: float | None = option(recipes=PAPER, type="float", help="{own}")
    head_lr: float | None = option(recipes=PAPER, type="float", help="{own}")
    weight_decay: float | None = option(recipes=PAPER, type="float", help="{own}: Adam's l2 penalty")
    lr_decay: float | None = option(recipes=PAPER, type="float", help="{own}: factor per epoch")
    swap: bool | None = option(recipes=PAPER, kind="negate", help="do not randomly swap the two sides")
    label_noise: float | None = option(recipes=PAPER, type="unit_fraction",
                                       help="flip this fraction of training labels (default 0)")
    max_steps: int | None = option(recipes=PAPER, type="positive_int", resume_free=True,
                                   help="stop after this many steps in total")
    checkpoint_every: int | None = option(recipes=PAPER, type="positive_int", resume_free=True, help="{own}: steps")
    val_every: int | None = option(recipes=PAPER, type="positive_int", resume_free=True,
                                   help="also validate every N steps (default: each epoch)")
    log_every: int | None = option(recipes=PAPER, type="positive_int", resume_free=True,
                                   help="{own}: steps between metrics lines")
    workers: int | None = option(recipes=PAPER, group="data", type="nonnegative_int", resume_free=True,
                                 help="{own}: decoding processes (default: GPU half the CPUs, 1-4; CPU 0 up to "
                                      "4 cores, else cores/8)")
    channels_last: bool | None = option(recipes=PAPER, kind="negate", help="keep NCHW memory format")

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
        if self.precision not in declared("precision")["choices"]:
            raise IIPAError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.recipe == "default" and self.precision != FEATURE_PRECISION:
            raise IIPAError(f"recipe 'default' computes its features in {FEATURE_PRECISION}, the precision scoring "
                            f"uses, so that the probe fits the numbers scoring computes; it does not take "
                            f"--precision {self.precision}")
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


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Options that only say how a run is carried out: a resumption may change them.
RESUME_FREE = frozenset(n for n in _FIELDS if declared(n)["resume_free"])
# Options that name the run (its data, folder and recipe) rather than configure it.
NAMES_RUN = frozenset(n for n in _FIELDS if declared(n)["names_run"])


def refuse_given(given: Iterable[str], used: Iterable[str], who: str) -> None:
    """An error naming ``who`` for every option in ``given`` (the options given explicitly,
    whatever their value) that is not in ``used`` and does not name the run. The recipes'
    own rule is the same: a field a recipe does not use must stay unset."""
    refused = sorted(set(given) - set(used) - NAMES_RUN)
    if refused:
        raise IIPAError(f"{who} does not use {', '.join(map(flag, refused))}")


def resume_conflicts(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """Fields whose values differ from the interrupted run (resuming would mix two runs)."""
    current = now.to_dict()
    return [f"{k}: {saved[k]!r} -> {current[k]!r}" for k in current
            if k not in RESUME_FREE and k in saved and saved[k] != current[k]]
