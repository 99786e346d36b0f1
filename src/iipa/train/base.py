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

# Held-out pairs the temperature is fitted on: the discriminable ones (the paper's T), whose
# label is sure, so that the fitted P means "the pick is right" as on the PDIPs it is judged on.
CALIBRATION_MIN_P = 0.95

# What every trained model's card says it cannot promise (one sentence a bullet).
LIMITS = (
    "trained on the pairs of one crawl: scores rank photos the way that crawl's audiences liked them",
    "only differences between scores of this model mean something",
    "accuracy on other accounts, other years or other platforms is unknown until measured",
)


class RecipeTrainer(abc.ABC):
    """One training run of a recipe in ``config.out``."""

    recipe: str

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        self.held_out: tuple[np.ndarray, np.ndarray] | None = None  # (score_high - score_low, target)
        self.held_out_source = ""  # what the held-out pairs are, for the card
        self.calibration: dict[str, Any] | None = None

    @abc.abstractmethod
    def run(self) -> dict[str, Any]:
        """Train (resuming what the run folder holds); the result record."""

    @abc.abstractmethod
    def resume(self) -> bool:
        """Load the run folder's state; False when there is none."""

    def _calibrate(self) -> None:
        """Fit the temperature T of P = logistic(T (f(A) - f(B))) on the held-out pairs
        (``self.held_out``: validation users' pairs, or the K-fold by account predictions when
        there are none) and fold it into the model (:meth:`apply_temperature`), so every entry
        point's logistic of a score difference is the calibrated probability. Recorded in
        ``self.calibration`` (T, what it was fitted on, n); a recipe without the ``calibrate``
        option, or without held-out pairs, is left as trained and says so."""
        if not getattr(self.config, "calibrate", None):
            return
        if self.held_out is None:
            self.calibration = {"T": 1.0, "note": "not calibrated: no held-out pairs"}
            self.say("not calibrated: no held-out pairs (no validation users and a single account)")
            return
        from iipa.calibration import calibration_metrics, fit_temperature

        diffs, targets = self.held_out
        keep = np.isfinite(diffs) & (targets >= CALIBRATION_MIN_P)
        try:
            temperature = fit_temperature(diffs[keep])
        except ValueError as exc:
            self.calibration = {"T": 1.0, "note": f"not calibrated: {exc}"}
            self.say(f"not calibrated: {exc}")
            return
        before, after = calibration_metrics(diffs[keep]), calibration_metrics(diffs[keep], temperature=temperature)
        self.apply_temperature(temperature)
        self.calibration = {"T": temperature, "fitted_on": f"{self.held_out_source} with P >= {CALIBRATION_MIN_P:g}",
                            "n": int(keep.sum()), "ece_before": before["ece"], "ece_after": after["ece"],
                            "log_loss_before": before["log_loss"], "log_loss_after": after["log_loss"]}
        self.say(f"calibration: T = {temperature:.3f} on {int(keep.sum())} held-out pairs; on them ECE "
                 f"{before['ece']:.3f} -> {after['ece']:.3f}, log-loss {before['log_loss']:.3f} -> "
                 f"{after['log_loss']:.3f}")

    def apply_temperature(self, temperature: float) -> None:
        """Multiply the model's scores by ``temperature`` (its head's weight and bias)."""
        raise NotImplementedError(f"recipe {self.recipe!r} cannot fold a temperature into its model")

    def card_facts(self, data: dict[str, Any], estimate: dict[str, Any] | None) -> dict[str, Any]:
        """The card fields (``iipa.model.cardschema.CARD_FIELDS``) this run can state."""
        validation = estimate or {"note": "no held-out users: no estimate of accuracy on unseen accounts"}
        return {"training_data": data, "validation": validation, "limits": list(LIMITS)}

    def say(self, text: str) -> None:
        print(f"iipa train: {text}", file=sys.stderr, flush=True)
