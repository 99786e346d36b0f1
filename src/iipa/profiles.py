"""Named preprocessing profiles. Weights carry the profile they expect.

A profile is the whole way from an image to a network input, decoding included:
:meth:`Profile.prepare` (one view, training) and :meth:`Profile.view_array` (the test-time
views, multi-crop included) are the one function every path that scores an image calls (``iipa score``/``rank``/``explain``/
``evaluate``/``serve``, the study, the trainer, the Python API, the ONNX runtimes), so a
score does not depend on how it was asked for.

Resizing uses Pillow's bilinear filter, exactly as torchvision's ``Resize`` does for
PIL input, and tensors are built as ``ToTensor`` builds them, so a profile reproduces the
torchvision pipeline it names bit for bit (see ``tests/test_parity.py``).

``decode="exact"`` decodes JPEGs at full size. ``decode="draft"`` lets libjpeg scale by
1/2-1/8 in the DCT while both sides stay >= ``size`` (2-3x faster on large photos, but the
pixels differ, most for small input sizes); only a model *trained* with draft decoding may
carry such a profile, since training and scoring must see the same pixels. Draft scaling
only applies to encoded inputs (paths, bytes, file objects): an already decoded PIL image
or array is scored from its pixels as given.

Everything up to the uint8 pixels (decoding, resizing, cropping, views) is PIL + numpy, so
the onnxruntime path scores without importing torch (~2-3 s of a fresh process's start-up);
the methods that return tensors import it when called.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from iipa.constants import CROPS, DECODES  # their home is numpy-free (the CLI's parsers read them)
from iipa.errors import IIPAError, ImageError
from iipa.images import ImageInput, open_image
from iipa.inputpolicy import DEFAULT_POLICY, InputPolicy
from iipa.registry import Registry

if TYPE_CHECKING:  # imported by the methods that return tensors: see the module docstring
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class Profile:
    """How an image becomes a network input.

    ``resize="stretch"``: resize to ``size`` x ``size`` ignoring the aspect ratio.
    ``resize="short_side"``: scale the short side to ``size``, then crop ``crop`` x
    ``crop`` (centre at test time, random in training).
    ``decode``: ``exact`` (full-size JPEG decoding) or ``draft`` (see the module docstring).
    ``crops``: the test-time views a scorer takes by default (1, 5 or 10, see :meth:`views`):
    part of how the model is meant to be used, so it travels with the weights.
    """

    name: str
    resize: Literal["stretch", "short_side"]
    size: int
    crop: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    description: str = ""
    decode: Literal["exact", "draft"] = "exact"
    crops: int = 1

    def __post_init__(self) -> None:
        if self.decode not in DECODES:
            raise IIPAError(f"profile {self.name}: decode must be one of {', '.join(DECODES)}, not {self.decode!r}")
        if self.crops not in CROPS:
            raise IIPAError(f"profile {self.name}: crops must be one of {', '.join(map(str, CROPS))}, not {self.crops!r}")

    @property
    def input_size(self) -> int:
        return self.crop or self.size

    @property
    def draft_size(self) -> tuple[int, int]:
        """Smallest decode size that loses nothing: both sides stay >= ``size``."""
        return (self.size, self.size)

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """What to pass as ``open_image(draft_size=...)``: None (exact) unless the profile drafts."""
        return self.draft_size if self.decode == "draft" else None

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

    def centre_box(self, width: int, height: int) -> Box:
        """The test-time crop of a resized ``width`` x ``height`` image (torchvision
        ``CenterCrop`` rounding); the whole image when the profile does not crop."""
        if self.crop is None:
            return (0, 0, width, height)
        c = self.crop
        top, left = int(round((height - c) / 2.0)), int(round((width - c) / 2.0))
        return (left, top, left + c, top + c)

    def crop_boxes(self, width: int, height: int, crops: int = 1) -> list[Box]:
        """Boxes of the ``crops`` test-time views: 1 = centre; 5 = four corners + centre;
        10 = the same five, flipped by :meth:`views` (a non-cropping profile has one box)."""
        if crops not in CROPS:
            raise IIPAError(f"crops must be one of {', '.join(map(str, CROPS))}, not {crops}")
        if self.crop is None or crops == 1:
            return [self.centre_box(width, height)]
        c = self.crop
        corners = [(0, 0), (width - c, 0), (0, height - c), (width - c, height - c)]
        return [(x, y, x + c, y + c) for x, y in corners] + [self.centre_box(width, height)]

    def crop_image(self, img: Image.Image, *, train: bool = False, rng: random.Random | None = None) -> Image.Image:
        if self.crop is None:
            return img
        w, h = img.size
        c = self.crop
        if w < c or h < c:
            raise IIPAError(f"profile {self.name}: image {w}x{h} smaller than crop {c}")
        if not train:
            return img.crop(self.centre_box(w, h))
        rng = rng or random
        top, left = rng.randint(0, h - c), rng.randint(0, w - c)
        return img.crop((left, top, left + c, top + c))

    def views(self, img: Image.Image, crops: int = 1) -> list[Image.Image]:
        """The resized image's test-time views (``crops`` 1, 5 or 10; with 10, or with more
        than 1 on a non-cropping profile, each view is followed by its mirror image)."""
        img = self.resize_image(img)
        whole = (0, 0, img.width, img.height)
        out = [img if box == whole else img.crop(box) for box in self.crop_boxes(img.width, img.height, crops)]
        if crops == 10 or (crops > 1 and self.crop is None):
            out = [v for view in out for v in (view, view.transpose(Image.FLIP_LEFT_RIGHT))]
        return out

    def open(self, source: ImageInput, *, max_pixels: int | None = None,
             policy: InputPolicy = DEFAULT_POLICY) -> Image.Image:
        """Decode ``source`` as this profile decodes (exact or draft), upright RGB, within
        ``policy`` (:func:`iipa.images.open_image`; ``max_pixels`` replaces its pixel limit)."""
        return open_image(source, draft_size=self.decode_size, max_pixels=max_pixels, policy=policy)

    def prepare(self, source: ImageInput, *, max_pixels: int | None = None, policy: InputPolicy = DEFAULT_POLICY,
                train: bool = False, rng: random.Random | None = None) -> torch.Tensor:
        """Any input (path, bytes, file object, PIL image, array) -> uint8 3 x S x S network input."""
        return self.to_uint8(self.open(source, max_pixels=max_pixels, policy=policy), train=train, rng=rng)

    def view_array(self, source: ImageInput, crops: int = 1, *, max_pixels: int | None = None,
                   policy: InputPolicy = DEFAULT_POLICY) -> np.ndarray:
        """Any input -> uint8 V x S x S x 3 numpy array of its ``crops`` test-time views (V = 1
        for ``crops=1``): what every backend scores (see :mod:`iipa.scoring`)."""
        return self.image_views(self.open(source, max_pixels=max_pixels, policy=policy), crops)

    def image_views(self, img: Image.Image, crops: int = 1) -> np.ndarray:
        """:meth:`view_array` of an already decoded RGB image (the service decodes on its own,
        within its pixel budget)."""
        return np.stack([np.asarray(v, dtype=np.uint8) for v in self.views(img, crops)])

    def to_uint8(self, img: Image.Image, *, train: bool = False, rng: random.Random | None = None) -> torch.Tensor:
        """RGB image -> uint8 CHW tensor of the network's input size (cheap to ship between processes)."""
        import torch

        img = self.crop_image(self.resize_image(img), train=train, rng=rng)
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (or CHW) -> float input, exactly ``ToTensor`` then ``Normalize``."""
        import torch

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
        """From :meth:`to_dict`; a dict without ``decode`` or ``crops`` (written before they
        existed) decodes exactly and takes one view."""
        d = dict(d)
        for key in ("mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)


_PROFILES: Registry[Profile] = Registry("preprocessing profile")


def register_profile(profile: Profile) -> Profile:
    return _PROFILES.register(profile.name, profile)


def get_profile(name: str | Profile | dict) -> Profile:
    if isinstance(name, Profile):
        return name
    if isinstance(name, dict):
        return Profile.from_dict(name)
    return _PROFILES.get(name)


def list_profiles() -> list[str]:
    return _PROFILES.names()


register_profile(Profile(
    "authors", "stretch", 224,
    description="The authors' released test script: stretch to 224x224, ToTensor, no normalisation.",
))
register_profile(Profile(
    "paper", "short_side", 256, 224, IMAGENET_MEAN, IMAGENET_STD,
    description="Paper §4.1: short side 256, 224 crop (centre at test), ImageNet mean/std.",
))
# EfficientNet-Lite's TF weights take mean = std = 0.5 (verified: skimage's chelsea lands in the ImageNet cat classes).
for _name, _size, _crop, _what in (
    ("efficientnet", 256, 224, "EfficientNet-Lite (TF weights)"),
    ("efficientnet-lite1", 274, 240, "EfficientNet-Lite1 at its native 240"),
    ("efficientnet-lite2", 297, 260, "EfficientNet-Lite2 at its native 260"),
    ("efficientnet-small", 146, 128, "EfficientNet-Lite at 128x128 for quick CPU runs (the demo)"),
):
    register_profile(Profile(_name, "short_side", _size, _crop, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                             description=f"{_what}: short side {_size}, {_crop} crop, mean = std = 0.5."))
del _name, _size, _crop, _what
register_profile(Profile(
    "small", "short_side", 72, 64, IMAGENET_MEAN, IMAGENET_STD,
    description="Tiny inputs for tests and quick experiments: short side 72, 64 crop.",
))


# (uint8 V x S x S x 3 views, None) or (None, why the input could not be scored).
Prepared = tuple[np.ndarray | None, str | None]


def prepare_item(profile: Profile, item: ImageInput, crops: int, limits: int | InputPolicy) -> Prepared:
    """The profile's uint8 V x S x S x 3 views of one input (:meth:`Profile.view_array`), or
    the error that stops it (never raises). ``limits``: an input policy, or a pixel limit
    (the default policy's other limits)."""
    policy = limits if isinstance(limits, InputPolicy) else InputPolicy(max_pixels=limits)
    try:
        return profile.view_array(item, crops, policy=policy), None
    except ImageError as exc:
        return None, exc.reason + (f": {exc.detail}" if exc.detail else "")
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a batch
        return None, f"corrupt: {exc.__class__.__name__}: {exc}"
