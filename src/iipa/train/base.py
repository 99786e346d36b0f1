"""The interface both recipes' trainers implement (``RECIPES[name].trainer``).

``run()`` starts a run or resumes what the run folder holds and returns the result record
(also written to ``summary.json``); ``resume()`` loads that state; ``save_model()`` writes a
checkpoint whose ``info`` carries the card facts (training data, the held-out estimate,
limits). After fitting, ``_calibrate()`` receives the held-out score differences.
"""

from __future__ import annotations

import abc
import sys
from pathlib import Path
from typing import Any

import numpy as np

from iipa.train.config import TrainConfig

LIMITS = ("Trained on the pairs of one crawl: scores rank photos the way that crawl's audiences liked them; "
          "only differences between scores of this model mean something. Accuracy on other accounts, "
          "other years or other platforms is unknown until measured.")


class RecipeTrainer(abc.ABC):
    """One training run of a recipe in ``config.out``."""

    recipe: str

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        self.held_out: tuple[np.ndarray, np.ndarray] | None = None  # (score_high - score_low, target)

    @abc.abstractmethod
    def run(self) -> dict[str, Any]:
        """Train (resuming what the run folder holds); the result record."""

    @abc.abstractmethod
    def resume(self) -> bool:
        """Load the run folder's state; False when there is none."""

    @abc.abstractmethod
    def result(self) -> dict[str, Any]:
        """The result record written to ``summary.json``."""

    def _calibrate(self) -> None:
        """Runs after fitting with ``self.held_out`` set (validation users' pairs, or the K-fold
        by account held-out predictions when there are none). A no-op for now: the temperature
        step folds T into the head and the reference here."""
        return None

    def card_facts(self, data: str, estimate: dict[str, Any] | None) -> dict[str, Any]:
        """The card fields of ``modelcard.CARD_FIELDS`` this run can state."""
        validation = estimate or {"note": "no held-out users: no estimate of accuracy on unseen accounts"}
        return {"training_data": data, "validation": validation, "limits": LIMITS}

    def say(self, text: str) -> None:
        print(f"iipa train: {text}", file=sys.stderr, flush=True)
