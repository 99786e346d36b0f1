"""The one typed training configuration. Its ``to_dict()`` is saved with every checkpoint,
so a run can be reproduced, resumed and described without remembering its command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from iipa.errors import IIPAError
from iipa.profiles import DECODES

# Values that depend on the recipe. ``paper``: §4.1 exactly (Adam, two learning rates,
# x0.95 per epoch, batch 64, hard labels, random crops). ``default``: the small-data recipe
# of ``train/small.py`` (linear-probe warm start, top stages fine-tuned on cached frozen
# features, every within-user pair with soft labels, EMA, early stopping on unseen users).
# Its backbone reads final + middle-stage features (lite.MultiStageLite) and, by default, only
# its head is trained: on instagram-dev that probe beat the final-feature probe in 5-fold CV by
# account (0.696 vs 0.684, three fold seeds); fine-tuning conv_head added +0.003 on one split.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"backbone": "resnet50", "epochs": 10, "batch_size": 64, "backbone_lr": 1e-5, "head_lr": 1e-4,
              "weight_decay": 1e-4, "soft_labels": False},
    "default": {"backbone": "efficientnet_lite0_ms", "epochs": 10, "batch_size": 128, "backbone_lr": 1e-4,
                "head_lr": 1e-3, "weight_decay": 1e-2, "soft_labels": True},
}


@dataclass
class TrainConfig:
    """A training run. Fields left None take the value of ``recipe`` (see ``RECIPES``)."""

    pairs: str = ""
    images: str = ""
    out: str = ""
    recipe: str = "default"  # default (small data) | paper (§4.1 exactly)
    posts: str | None = None  # default recipe: derive every within-user pair of the training users
    backbone: str | None = None
    pretrained: str = "imagenet"  # imagenet | none
    profile: str | None = None  # None: the backbone's own profile
    epochs: int | None = None
    batch_size: int | None = None  # paper: pairs per step; default recipe: images per step (whole users)
    backbone_lr: float | None = None  # pretrained layers (default recipe: the topmost trained stage)
    head_lr: float | None = None  # the new one-output last layer
    weight_decay: float | None = None  # paper: Adam's l2 penalty; default recipe: AdamW's decoupled decay
    lr_decay: float = 0.95  # paper: learning rates x 0.95 after every epoch
    soft_labels: bool | None = None  # target = the pair's P instead of 1
    swap: bool = True  # randomly present the more popular image as B (label 0)
    label_noise: float = 0.0  # flip this fraction of the training labels (Table 2)
    tune_stages: int = 0  # default recipe: stages trained from the top (0: linear probe only)
    layer_decay: float = 0.5  # default recipe: lr factor per stage below the top
    ema_halflife_epochs: float = 1.0  # default recipe: half-life of the weight average
    patience: int = 2  # default recipe: epochs without progress on validation users before stopping
    hflip: bool = True  # default recipe: horizontal flips (the only augmentation)
    probe_l2: float | None = None  # default recipe: the probe's L2 strength (None: chosen on validation users)
    max_gap_days: float | None = 10.0  # default recipe with --posts: largest upload gap of a derived pair
    min_pair_p: float = 0.5  # default recipe with --posts: smallest P of a derived training pair (0.5: all)
    domain: str = "real"  # real photos | simulated (demo, rendered shapes): written into the card
    max_steps: int | None = None  # stop after this many optimizer steps in total
    max_train_pairs: int | None = None  # use at most this many training pairs
    max_val_pairs: int | None = 2000  # validation subset per evaluation (None: all)
    checkpoint_every: int = 200  # optimizer steps between resumable checkpoints
    val_every: int | None = None  # also validate every N steps (default: each epoch end)
    log_every: int = 10  # steps between metrics lines
    workers: int | None = None  # decoding processes (None: see loop.default_train_workers)
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    seed: int = 0
    # JPEG decoding, exact | draft (faster; the profile records it, so scoring decodes the same way).
    # None: the profile's own; the default recipe writes back the mode its model's profile uses.
    decode: str | None = None
    progress: bool | None = None  # None: when stderr is a terminal
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise IIPAError(f"--recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        for key, value in RECIPES[self.recipe].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.decode not in (None, *DECODES):
            raise IIPAError(f"decode must be one of {', '.join(DECODES)}, not {self.decode!r}")
        if self.pretrained not in ("imagenet", "none"):
            raise IIPAError(f"--pretrained must be imagenet or none, not {self.pretrained!r}")
        if self.domain not in ("real", "simulated"):
            raise IIPAError(f"domain must be real or simulated, not {self.domain!r}")
        if not 0.0 <= self.label_noise < 1.0:
            raise IIPAError(f"label noise must be in [0, 1), not {self.label_noise}")
        for name in ("batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise IIPAError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.probe_l2 is not None and not self.probe_l2 > 0:
            raise IIPAError(f"--probe-l2 must be > 0, not {self.probe_l2}")
        if self.epochs < (0 if self.recipe == "default" else 1):
            raise IIPAError(f"epochs must be >= 1, not {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if "fast_decode" in d and "decode" not in d:  # configs saved before `decode`: a draft flag
            d = {**d, "decode": "draft" if d["fast_decode"] else None}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# Fields that may differ between a run and its resumption without changing what is learned.
RESUME_FREE = {"epochs", "max_steps", "workers", "progress", "device", "checkpoint_every",
               "log_every", "val_every", "out", "extra"}


def resume_conflicts(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """Fields whose values differ from the interrupted run (resuming would mix two runs)."""
    current = now.to_dict()
    return [f"{k}: {saved[k]!r} -> {current[k]!r}" for k in current
            if k not in RESUME_FREE and k in saved and saved[k] != current[k]]
