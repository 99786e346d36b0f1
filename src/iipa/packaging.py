"""Packaging a trained run as named weights: the trainer's facts only, nothing injected.

:func:`package_weights` turns an ``iipa train`` checkpoint into the file a
:class:`~iipa.model.weights.NamedWeights` entry ships. The file keeps what training computed (tensors,
profile, reference, calibration, the config and data counts) and nothing else: the card facts
(training data's origin, the accuracy estimate, baselines, limits) are the entry's declared
:class:`~iipa.model.cardschema.CardFacts` (:mod:`iipa.model.named_cards`), and the config's file and folder
fields (this machine's paths) are left out rather than rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from iipa.errors import IIPAError
from iipa.model.cardschema import CARD_FIELDS
from iipa.model.weights import get_weights

# TrainConfig fields that name files or folders of the machine that trained.
PATH_FIELDS = ("pairs", "images", "posts", "out")


def package_weights(checkpoint: str | os.PathLike, name: str, out: str | os.PathLike) -> Path:
    """Write ``checkpoint`` (an ``iipa train`` run's ``best.pt``) to ``out`` as the weights of the
    registered entry ``name``, whose card must be declared. The profile (decode mode included)
    is the one the run trained and scored with: train with ``--draft-decode`` to ship draft
    decoding, it is not rewritten here."""
    from iipa.model.checkpoint import save_checkpoint
    from iipa.model.record import load_model

    entry = get_weights(name)
    if entry.card is None:
        raise IIPAError(f"weights {name!r} have no declared card: declare its CardFacts in iipa.model.named_cards "
                        "and give it to the entry (NamedWeights(card=...)) before packaging")
    model = load_model(checkpoint, download=False)
    if model.arch != entry.arch or model.profile.name != entry.profile:
        raise IIPAError(f"{checkpoint}: holds a {model.arch} model with profile {model.profile.name}, but {name!r} "
                        f"is registered as {entry.arch} with profile {entry.profile}")
    info = {k: v for k, v in model.info.items() if k not in (*CARD_FIELDS, "source", "weights")}
    if info.get("config"):
        info["config"] = {k: v for k, v in info["config"].items() if k not in PATH_FIELDS}
    model.info = {**info, "weights": name, "domain": entry.domain or info.get("domain")}
    return save_checkpoint(model, out)
