"""Which of two photos will get more likes: the paper's pairwise question, with a probability.

The Siamese network is trained on O_AB = f(A) - f(B) with the binary cross-entropy of
sigmoid(O_AB) against "A is the more popular image" (paper eq. 7-9; ``train/loop.py``), so
the probability the model assigns to A getting more likes than B is the logistic of the
score difference, P(A > B) = 1 / (1 + exp(-(s_A - s_B))). (The pair builder's
Φ(ΔS / (√2 σ)) is the Thurstone model of the *likes*, in log-likes units; model scores were
not trained against it.)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

LINK = "logistic"  # the link function of the training loss, reported with every comparison


def preference_probability(score_a: float, score_b: float) -> float:
    """P(A gets more likes than B) = 1 / (1 + exp(-(score_a - score_b))), computed stably."""
    d = score_a - score_b
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Comparison:
    image_a: str
    image_b: str
    score_a: float
    score_b: float
    probability_a: float

    @property
    def more_popular(self) -> str:
        return self.image_a if self.probability_a >= 0.5 else self.image_b

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "more_popular": self.more_popular}


def compare(scorer: Any, a: str | os.PathLike, b: str | os.PathLike) -> Comparison:
    """Score ``a`` and ``b`` with ``scorer`` (an ``iipa.Scorer`` or anything with ``score``);
    an unreadable image raises ``IIPAError``."""
    score_a, score_b = scorer.score([a, b])
    return Comparison(os.fspath(a), os.fspath(b), float(score_a), float(score_b),
                      preference_probability(float(score_a), float(score_b)))
