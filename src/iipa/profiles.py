"""Named preprocessing profiles. Weights carry the name of the profile they expect.

Resizing uses Pillow's bilinear filter, exactly as torchvision's ``Resize`` does for
PIL input, and tensors are built as ``ToTensor`` builds them, so a profile reproduces the
torchvision pipeline it names bit for bit (see ``tests/test_parity.py``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from iipa.errors import IIPAError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Profile:
    """How an image becomes a network input.

    ``resize="stretch"``: resize to ``size`` x ``size`` ignoring the aspect ratio.
    ``resize="short_side"``: scale the short side to ``size``, then crop ``crop`` x
    ``crop`` (centre at test time, random in training).
    """

    name: str
    resize: Literal["stretch", "short_side"]
    size: int
    crop: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    description: str = ""

    @property
    def input_size(self) -> int:
        return self.crop or self.size

    @property
    def draft_size(self) -> tuple[int, int]:
        """Smallest decode size that loses nothing: both sides stay >= ``size``."""
        return (self.size, self.size)

    def resize_image(self, img: Image.Image) -> Image.Image:
        if self.resize == "stretch":
            return img.resize((self.size, self.size), Image.BILINEAR)
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.size * long / short)  # torchvision truncates, so do we
        new_w, new_h = (self.size, new_long) if w <= h else (new_long, self.size)
        if (new_w, new_h) == (w, h):
            return img
        return img.resize((new_w, new_h), Image.BILINEAR)

    def crop_image(self, img: Image.Image, *, train: bool = False, rng: random.Random | None = None) -> Image.Image:
        if self.crop is None:
            return img
        w, h = img.size
        c = self.crop
        if w < c or h < c:
            raise IIPAError(f"profile {self.name}: image {w}x{h} smaller than crop {c}")
        if train:
            rng = rng or random
            top, left = rng.randint(0, h - c), rng.randint(0, w - c)
        else:  # torchvision CenterCrop rounding
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        return img.crop((left, top, left + c, top + c))

    def to_uint8(self, img: Image.Image, *, train: bool = False, rng: random.Random | None = None) -> torch.Tensor:
        """RGB image -> uint8 CHW tensor of the network's input size (cheap to ship between processes)."""
        img = self.crop_image(self.resize_image(img), train=train, rng=rng)
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (or CHW) -> float input, exactly ``ToTensor`` then ``Normalize``."""
        x = batch.float().div(255)
        if self.mean is not None and self.std is not None:
            shape = (-1, 1, 1)
            mean = torch.tensor(self.mean, dtype=x.dtype).view(shape)
            std = torch.tensor(self.std, dtype=x.dtype).view(shape)
            x = x.sub(mean).div(std)
        return x

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Test-time transform of one RGB image to a float CHW tensor."""
        return self.normalize(self.to_uint8(img))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean) if self.mean else None
        d["std"] = list(self.std) if self.std else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        d = dict(d)
        for key in ("mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)


_PROFILES: dict[str, Profile] = {}


def register_profile(profile: Profile) -> Profile:
    if profile.name in _PROFILES:
        raise ValueError(f"profile {profile.name!r} is already registered")
    _PROFILES[profile.name] = profile
    return profile


def get_profile(name: str | Profile | dict) -> Profile:
    if isinstance(name, Profile):
        return name
    if isinstance(name, dict):
        return Profile.from_dict(name)
    try:
        return _PROFILES[name]
    except KeyError:
        raise IIPAError(f"unknown preprocessing profile {name!r}; known: {', '.join(list_profiles())}") from None


def list_profiles() -> list[str]:
    return sorted(_PROFILES)


register_profile(Profile(
    "authors", "stretch", 224,
    description="The authors' released test script: stretch to 224x224, ToTensor, no normalisation.",
))
register_profile(Profile(
    "paper", "short_side", 256, 224, IMAGENET_MEAN, IMAGENET_STD,
    description="Paper §4.1: short side 256, 224 crop (centre at test), ImageNet mean/std.",
))
register_profile(Profile(
    "efficientnet", "short_side", 256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
    description="EfficientNet-Lite (TF weights): short side 256, 224 crop, mean = std = 0.5.",
))
register_profile(Profile(
    "efficientnet-small", "short_side", 146, 128, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
    description="EfficientNet-Lite at 128x128 for quick CPU runs (the demo): short side 146, 128 crop.",
))
register_profile(Profile(
    "small", "short_side", 72, 64, IMAGENET_MEAN, IMAGENET_STD,
    description="Tiny inputs for tests and quick experiments: short side 72, 64 crop.",
))
