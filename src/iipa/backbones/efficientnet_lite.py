"""EfficientNet-Lite with a multi-stage score head: the final pooled features and the
mean-pooled outputs of middle stages (its ImageNet weights: :mod:`iipa.backbones.lite_weights`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MultiStageLite(nn.Module):
    """An EfficientNet-Lite whose score head also reads the mean-pooled outputs of middle stages.

    The head's input is [final pooled features, mean of stage ``t`` output for t in ``taps``]
    (Lite0: 1280 + 40 + 80 + 112 + 192 + 320 = 2024 values). On real Instagram photos of
    unseen accounts a linear head on these beats one on the final features alone (5-fold CV by
    account, docs/models.md): popularity cues such as
    colour, texture and layout live partly below the ImageNet-class level. It costs nothing
    at inference: the pooled values are by-products of the forward pass.
    """

    def __init__(self, base: nn.Module, taps: Sequence[int] = (2, 3, 4, 5, 6)) -> None:
        super().__init__()
        self.base = base
        self.taps = tuple(taps)
        base.classifier = nn.Identity()  # replaced by our own head below
        training, _ = base.training, base.eval()  # eval: the probe pass must not touch BN statistics
        with torch.no_grad():  # stage widths differ per variant: read them off a tiny forward pass
            _, pooled = self._trunk(torch.zeros(1, 3, 32, 32))
        base.train(training)
        self.classifier = nn.Linear(base.num_features + sum(p.shape[1] for p in pooled), 1)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b = self.base
        h = b.bn1(b.conv_stem(x))
        pooled = []
        for i, stage in enumerate(b.blocks):
            h = stage(h)
            if i in self.taps:
                pooled.append(h.mean((2, 3)))
        return b.bn2(b.conv_head(h)), pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, pooled = self._trunk(x)
        return self.classifier(torch.cat([h.mean((2, 3)), *pooled], 1))
