"""Split a PopularityNet into a frozen trunk and a trainable top, for the small-data recipe.

Fine-tuning only the last stages lets the trunk's outputs be computed once per image
(and per horizontal flip) and cached, so an epoch costs a fraction of a forward pass per
image: on 2 CPU cores full fine-tuning of EfficientNet-Lite0 manages about one epoch over
6,000 images in half an hour, the top alone many. ``tune_stages`` counts from the top:
0 = the score head only (a linear probe), 1 = also the 1x1 ``conv_head`` (+ its BN),
k >= 2 = also the last k - 1 stages of blocks. Backbones other than timm EfficientNets
support 0 only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from iipa.errors import IIPAError
from iipa.models import PopularityNet


def _is_timm_efficientnet(net: nn.Module) -> bool:
    return all(hasattr(net, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool"))


def max_tune_stages(model: PopularityNet) -> int:
    return len(model.net.blocks) + 1 if _is_timm_efficientnet(model.net) else 0


def _pre_logits(model: PopularityNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """Input of the score head for any backbone (a forward hook on the head)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = model.head.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
        try:
            model.net(x)
        finally:
            handle.remove()
        return seen[0]
    return run


def split(model: PopularityNet, tune_stages: int) -> tuple[Callable[[torch.Tensor], torch.Tensor],
                                                          Callable[[torch.Tensor], torch.Tensor], list[nn.Module]]:
    """(trunk, top, trainable modules ordered from the top down); ``top(trunk(x)) == model(x)``."""
    limit = max_tune_stages(model)
    if not 0 <= tune_stages <= limit:
        raise IIPAError(f"{model.arch}: tune_stages must be in 0..{limit}, not {tune_stages}")
    net = model.net
    if tune_stages == 0:
        return _pre_logits(model), lambda f: model.head(f).squeeze(-1), [model.head]
    first_top = len(net.blocks) - (tune_stages - 1)

    def trunk(x: torch.Tensor) -> torch.Tensor:
        h = net.bn1(net.conv_stem(x))
        for stage in net.blocks[:first_top]:
            h = stage(h)
        return h

    def top(h: torch.Tensor) -> torch.Tensor:
        for stage in net.blocks[first_top:]:
            h = stage(h)
        return net.forward_head(net.bn2(net.conv_head(h))).squeeze(-1)

    modules = [model.head, nn.ModuleList([net.conv_head, net.bn2])]
    modules += [net.blocks[i] for i in range(len(net.blocks) - 1, first_top - 1, -1)]
    return trunk, top, modules


def pre_logits_of_top(model: PopularityNet, tune_stages: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Features the head sees, from cached trunk outputs (for the linear-probe warm start)."""
    _, top, _ = split(model, tune_stages)
    if tune_stages == 0:
        return lambda f: f
    net = model.net
    first_top = len(net.blocks) - (tune_stages - 1)

    def run(h: torch.Tensor) -> torch.Tensor:
        for stage in net.blocks[first_top:]:
            h = stage(h)
        return net.forward_head(net.bn2(net.conv_head(h)), pre_logits=True)
    return run
