"""Siamese learning-to-rank training on PDIPs, the paper's experiments and the absolute-IPA baseline."""

from iipa._lazy import lazy_exports

# Lazy: `iipa train --help` reads TrainConfig's defaults without importing torch.
_EXPORTS = {"TrainConfig": "iipa.train.config", "Trainer": "iipa.train.loop", "train": "iipa.train.loop"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
