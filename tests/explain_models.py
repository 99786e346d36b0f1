"""Hand-built ``tiny`` models whose scores provably depend on planted regions (test helpers)."""

from __future__ import annotations

import numpy as np
import torch

from iipa.backbones.popularity_net import PopularityNet

GREY = 116  # ≈ the ImageNet mean: normalises to ≈ 0, so neither detector fires on it


def _normalised(profile, value: int) -> float:
    return float(profile.normalize(torch.full((3, 1, 1), value, dtype=torch.uint8)).mean())


def detector_model(profile: str = "small") -> PopularityNet:
    """score = mean area of bright pixels - mean area of dark pixels (in the last feature map).

    Channel 0 of every conv layer passes "bright" (RGB mean, normalised, above the midpoint
    between grey and white) through the identity, channel 1 passes "dark" (below the midpoint
    between black and grey); every other weight is zero and batch norm is the identity, so
    the score depends on nothing else.
    """
    model = PopularityNet("tiny", profile=profile, reference={"mean": 0.0, "std": 0.05, "source": "test"})
    grey, white, black = (_normalised(model.profile, v) for v in (GREY, 255, 0))
    conv1, bn1, _, conv2, bn2, _, conv3, bn3, _ = model.net.features
    with torch.no_grad():
        for conv in (conv1, conv2, conv3):
            conv.weight.zero_()
            conv.bias.zero_()
        for bn in (bn1, bn2, bn3):
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        conv1.weight[0, :, 1, 1] = 1.0 / 3.0
        conv1.bias[0] = -(grey + white) / 2
        conv1.weight[1, :, 1, 1] = -1.0 / 3.0
        conv1.bias[1] = (grey + black) / 2
        for conv in (conv2, conv3):
            conv.weight[0, 0, 1, 1] = 1.0
            conv.weight[1, 1, 1, 1] = 1.0
        model.head.weight.zero_()
        model.head.weight[0, 0] = 1.0
        model.head.weight[0, 1] = -1.0
        model.head.bias.zero_()
    return model.eval()


def planted(w: int, h: int, box: tuple[int, int, int, int], value: int, *, seed: int = 0) -> np.ndarray:
    """A grey, slightly noisy w x h RGB image with ``box`` (left, top, right, bottom) set to ``value``."""
    rng = np.random.default_rng(seed)
    img = np.clip(GREY + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    left, top, right, bottom = box
    img[top:bottom, left:right] = value
    return img


def box_mask(w: int, h: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = True
    return mask
