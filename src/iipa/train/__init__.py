"""Siamese learning-to-rank training on PDIPs, the paper's experiments and the absolute-IPA baseline."""

from iipa._lazy import lazy_exports

# Lazy: `iipa train --help` reads TrainConfig's defaults without importing torch.
_EXPORTS = {
    "iipa.train.config": "TrainConfig RECIPES",
    "iipa.train.loop": "Trainer",
    "iipa.train.small": "SmallDataTrainer",
    "iipa.train.runner": "train",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
