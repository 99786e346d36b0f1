"""The one typed training configuration. Its ``to_dict()`` is saved with every checkpoint,
so a run can be reproduced, resumed and described without remembering its command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from iipa.errors import IIPAError


@dataclass
class TrainConfig:
    """Paper defaults (§4.1) unless a field says otherwise."""

    pairs: str = ""
    images: str = ""
    out: str = ""
    backbone: str = "resnet50"
    pretrained: str = "imagenet"  # imagenet | none
    profile: str | None = None  # None: the backbone's own profile
    epochs: int = 10
    batch_size: int = 64
    backbone_lr: float = 1e-5  # pretrained layers
    head_lr: float = 1e-4  # the new one-output last layer
    weight_decay: float = 1e-4  # Adam's l2 penalty, as in the paper
    lr_decay: float = 0.95  # learning rates x 0.95 after every epoch
    soft_labels: bool = False  # beyond the paper: target = the pair's P instead of 1
    swap: bool = True  # randomly present the more popular image as B (label 0)
    label_noise: float = 0.0  # flip this fraction of the training labels (Table 2)
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
    fast_decode: bool = False  # train (and so score) with the profile's JPEG draft decoding
    progress: bool | None = None  # None: when stderr is a terminal
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pretrained not in ("imagenet", "none"):
            raise IIPAError(f"--pretrained must be imagenet or none, not {self.pretrained!r}")
        if not 0.0 <= self.label_noise < 1.0:
            raise IIPAError(f"label noise must be in [0, 1), not {self.label_noise}")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise IIPAError(f"{name} must be >= 1, not {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
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
