"""The networks: :mod:`~iipa.backbones.popularity_net` (the backbone registry and
:class:`~iipa.backbones.popularity_net.PopularityNet`) and :mod:`~iipa.backbones.efficientnet_lite`
(EfficientNet-Lite ImageNet weights and the multi-stage Lite variant). Below the model layer;
nothing is imported here (``iipa.PopularityNet`` and friends are exported by :mod:`iipa`).
"""
