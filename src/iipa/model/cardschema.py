"""One schema for the card facts of every model, shipped or trained.

A model's card facts (:data:`CARD_FIELDS`) are what a person needs to judge its scores: the
data it was trained on, its accuracy on accounts that chose nothing, baselines with their
sources, limits. A trained checkpoint carries them in its ``info`` (checked by
:func:`check_card_facts` when the file is written); a named model declares them once, as a
:class:`CardFacts` next to its weights entry (:mod:`iipa.model.named_cards`), and its file carries
none. The headline of ``validation`` is :data:`HEADLINE`. This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iipa.errors import IIPAError

CARD_FIELDS = ("training_data", "validation", "baselines", "limits")
# validation[HEADLINE] is the card's accuracy headline: a figure on accounts that were neither
# trained on nor used to choose anything (hyper-parameters, epoch, temperature).
HEADLINE = "unseen_accounts"
# Below these counts a figure is a rough guess, and the card and `iipa score` say so: a 95 %
# Wilson interval at accuracy 0.7 spans about +-0.09 at 100 pairs (+-0.2 at 20), and a
# reference of fewer than 200 scores puts the level edges (the 20 % quantiles of its
# Gaussian) off by about a tenth of a std or more.
MIN_PAIRS = 100
MIN_REFERENCE_IMAGES = 200
# Pairs of one account share its audience and style, so an accuracy over a few accounts swings
# with which accounts they are, more than the interval over pairs says.
MIN_ACCOUNTS = 10


class CardError(IIPAError):
    """Card facts that do not follow the schema (a writer's bug, caught before the file exists)."""


@dataclass(frozen=True)
class CardFacts:
    """A named model's card facts, declared as data (like torchvision's ``Weights.meta``).

    ``training_data``: what the model learned from (the trainer's counts stored in the weights
    file complete it); ``validation``: the accuracy rows, :data:`HEADLINE` first;
    ``baselines``: ``{"method", "accuracy", "source"}`` rows; ``limits``: one sentence each.
    """

    training_data: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    baselines: tuple[Mapping[str, Any], ...] = ()
    limits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_card_facts(self.as_dict(), "declared card")

    def as_dict(self) -> dict[str, Any]:
        return {"training_data": dict(self.training_data), "validation": dict(self.validation),
                "baselines": [dict(b) for b in self.baselines], "limits": list(self.limits)}


def check_card_facts(info: Mapping[str, Any], where: str) -> None:
    """Raise :class:`CardError` when ``info``'s card fields break the schema: ``limits`` a list
    of sentences (a string is an error: it would show one character per bullet), ``baselines``
    rows with a method, an accuracy and a source, ``training_data`` and ``validation`` mappings."""
    limits = info.get("limits")
    if limits is not None:
        if isinstance(limits, (str, bytes)) or not isinstance(limits, Sequence):
            raise CardError(f"{where}: card field 'limits' must be a list of sentences, "
                            f"not {type(limits).__name__}")
        if not all(isinstance(x, str) and x.strip() for x in limits):
            raise CardError(f"{where}: card field 'limits' must hold non-empty strings only")
    for row in info.get("baselines") or ():
        if not isinstance(row, Mapping) or not {"method", "accuracy", "source"} <= set(row):
            raise CardError(f"{where}: every baseline needs a method, an accuracy and a source (got {row!r})")
    for key in ("training_data", "validation"):
        if info.get(key) is not None and not isinstance(info[key], Mapping):
            raise CardError(f"{where}: card field {key!r} must be a mapping, not {type(info[key]).__name__}")


def readable(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Card facts as a reader shows them: a file written before the schema may hold ``limits``
    as one string (one limit, one bullet) or training data as a sentence."""
    out = dict(facts)
    if isinstance(out.get("limits"), str):
        out["limits"] = [out["limits"]]
    if isinstance(out.get("training_data"), str):
        out["training_data"] = {"source": out["training_data"]}
    return out


def evidence_warning(validation: Mapping[str, Any] | None, reference: Mapping[str, Any] | None) -> str | None:
    """One line when the card's headline accuracy rests on fewer than :data:`MIN_PAIRS` pairs or
    :data:`MIN_ACCOUNTS` accounts, or the reference distribution on fewer than
    :data:`MIN_REFERENCE_IMAGES` scores; else None."""
    parts = []
    head = (validation or {}).get(HEADLINE)
    pairs = head.get("pairs") if isinstance(head, Mapping) else None
    accounts = head.get("accounts") if isinstance(head, Mapping) else None
    if isinstance(pairs, int) and pairs < MIN_PAIRS:
        parts.append(f"its accuracy rests on {pairs} pairs" + (f" of {accounts} accounts" if accounts else "")
                     + f" (fewer than {MIN_PAIRS}: the interval is wide)")
    elif isinstance(accounts, int) and accounts < MIN_ACCOUNTS:
        parts.append(f"its accuracy rests on {accounts} accounts (fewer than {MIN_ACCOUNTS}: pairs of one account "
                     "are alike, so accounts differ more than the interval over pairs says)")
    n = (reference or {}).get("n")
    if isinstance(n, int) and n < MIN_REFERENCE_IMAGES:
        parts.append(f"its reference distribution rests on {n} images (fewer than {MIN_REFERENCE_IMAGES}: "
                     "levels and the 0-100 scale are rough)")
    return "few data: " + "; ".join(parts) if parts else None
