"""Siamese learning-to-rank training on PDIPs, the paper's experiments and the absolute-IPA baseline."""

from iipa.train.config import TrainConfig
from iipa.train.loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
