"""Model cards: what a model's score means, its range and reference, and how it was made.

One function, :func:`model_card`, reads a model's :class:`~iipa.model.record.ModelRecord` (checkpoints,
named weights, exported ONNX files and in-memory models alike), so the CLI (``iipa
model-info``), the HTTP service and reports all say the same thing. Nothing is built or
downloaded for a card: the default model's card imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iipa import levels
from iipa.model.cardschema import CARD_FIELDS, evidence_warning, readable
from iipa.model.onnx_format import INPUT_DOC
from iipa.model.record import ModelRecord, resolve_model

SCORE_MEANING = (
    "Predicted intrinsic popularity (Ding, Ma & Wang 2019): how popular the image would be "
    "from its visual content alone, other factors (user, time, caption) held equal. Higher is "
    "more popular. The model was trained on pairs, so only differences and rankings between "
    "scores of the same model mean something: a score difference d = f(A) - f(B) is the "
    "predicted probability 1 / (1 + exp(-d)) that A is the more popular image (paper Eq. 7)."
)
SCORE_RANGE = "any real number (no bounds); its scale is set by the model, see reference"
SCALED_DEFINITION = "scaled = 100 * Phi((score - mean) / std): the score's percentile in the reference Gaussian"
COMPARE_MEANING = ("P(A more popular than B) = 1 / (1 + exp(-(score_A - score_B))): the logistic of the "
                   "score difference the Siamese network is trained on (paper Eq. 7)")
PAPER = "K. Ding, K. Ma, S. Wang. Intrinsic Image Popularity Assessment. ACM Multimedia 2019."


def level_bands(reference: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"level", "from", "to"}]`` in score units; the outer bands are open (None)."""
    edges = [None, *levels.level_edges(reference), None]
    return [{"level": name, "from": edges[i], "to": edges[i + 1]} for i, name in enumerate(levels.LEVELS)]


def _meaning(reference: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"score_meaning": SCORE_MEANING, "score_range": SCORE_RANGE,
                           "compare": COMPARE_MEANING, "paper": PAPER,
                           "reference": dict(reference) if reference else None}
    if reference:
        out["scaled"] = SCALED_DEFINITION
        out["levels"] = level_bands(reference)
    else:
        out["scaled"] = "not available: the model has no reference distribution"
        out["levels"] = None
    return out


def warn_if_simulated(record: ModelRecord, who: str) -> bool:
    """One stderr line when a model trained on simulated images is about to score real files."""
    if record.domain != "simulated":
        return False
    import sys

    print(f"{who}: warning: this model was trained on simulated images (the demo's rendered shapes); "
          "its scores say nothing about real photos. Use the default model for real photos.", file=sys.stderr)
    return True


def warn_before_scoring(record: ModelRecord, who: str) -> None:
    """The stderr lines a scoring command prints about its model: trained on simulated images,
    or card figures resting on few data (:func:`iipa.model.cardschema.evidence_warning`)."""
    import sys

    warn_if_simulated(record, who)
    line = evidence_warning(card_facts(record).get("validation"), record.reference)
    if line:
        print(f"{who}: warning: {display_name(record)}: {line} (iipa model-info shows its card)", file=sys.stderr)


def card_facts(record: ModelRecord) -> dict[str, Any]:
    """The model's ``CARD_FIELDS``: named weights' declared card (the file's copies, if an old
    file has any, are not read), else what the weights file carries."""
    if record.entry is not None and record.entry.card is not None:
        return record.entry.card.as_dict()
    return readable({k: record.info[k] for k in CARD_FIELDS if k in record.info})


def model_card(spec: Any) -> dict[str, Any]:
    """The card of a model: a :class:`~iipa.model.record.ModelRecord` or anything
    :func:`~iipa.model.record.resolve_model` takes. Read from the record only: named weights that
    are not downloaded are described from the registry, and no model is built."""
    record = resolve_model(spec, offline=True)
    info = dict(record.info)
    facts = card_facts(record)
    config = info.get("config")
    card: dict[str, Any] = {
        "name": record.name, "kind": _KIND[record.kind], "arch": record.arch,
        "backbone_imagenet_weights": _pretrained(record.arch),
        "profile": record.profile.to_dict(), "decode": record.profile.decode, "crops": record.crops,
        "weights_source": info.get("source") or info.get("weights") or "in memory",
        "backends": list(record.backends), "domain": record.domain,
        **_meaning(record.reference),
        "calibration": dict(record.calibration) if record.calibration else None,
        # The profile states the decode mode once: the config's copy of it is left out.
        "training": {"config": {k: v for k, v in config.items() if k not in _DECODE_KEYS} if config else None,
                     "metrics": info.get("metrics")},
        **facts,
        "training_data": training_data(facts.get("training_data"), info.get("data")),
        "info": {k: v for k, v in info.items() if k not in _NOT_INFO},
        "warning": evidence_warning(facts.get("validation"), record.reference),
    }
    if record.parameters is not None:
        card["parameters"] = record.parameters
    if record.kind == "onnx":
        card.update(file_bytes=record.onnx_file.stat().st_size, input=INPUT_DOC,
                    precision=record.onnx_precision)
    if record.entry is not None:
        entry, cached = record.entry, record.torch_file
        card.update(description=entry.description, homepage=entry.homepage,
                    meta=dict(entry.meta),
                    sha256=entry.sha256, packaged=entry.packaged, cache_path=str(cached), cached=cached.is_file(),
                    onnx_file=str(record.onnx_file) if record.onnx_file else None)
        if not cached.is_file() and record.onnx_file is None:
            card["kind"] = "named weights (not downloaded)"
            card["weights_source"] = entry.url
    return card


_DECODE_KEYS = ("decode", "fast_decode")
# Shown elsewhere in the card: the weights (name, weights_source), config, data, calibration.
_NOT_INFO = ("config", "metrics", "domain", "data", "calibration", "source", "weights", *CARD_FIELDS)
# The trainer's data facts (info["data"]) in the card's words: accounts, never "users".
_DATA_KEYS = {"train_users": "training_accounts", "train_images": "training_images", "train_pairs": "training_pairs",
              "train_source": "pairs", "select_pairs": "model_selection_pairs", "val_users": "validation_accounts",
              "val_pairs": "validation_pairs", "dropped_missing_images": "pairs_dropped_for_missing_images"}


# Where the data came from, then the counts, then how the pairs were chosen.
_DATA_ORDER = ("source", "training_accounts", "training_images", "training_pairs", "pairs")


def training_data(written: Mapping[str, Any] | None, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the model was trained on, one count per concept: the card's ``training_data``
    (written by whoever shipped the model) completed by the trainer's own ``data`` facts.
    Accounts with at least one training pair are the ``training_accounts``."""
    out: dict[str, Any] = {}
    for key, value in (written or {}).items():
        out[key.replace("users", "accounts")] = value
    for key, value in (data or {}).items():
        name = _DATA_KEYS.get(key, key)
        if name not in out and value not in (None, 0, {}) and not (isinstance(value, dict) and not any(value.values())):
            out[name] = value
    first = [k for k in _DATA_ORDER if k in out]
    return {k: out[k] for k in (*first, *(k for k in out if k not in first))} or None


def display_name(record: ModelRecord) -> str:
    """The model's name without local paths: named weights by name, a file by its file name."""
    name = record.name if record.kind in ("named", "memory") else Path(record.name).name
    if record.kind == "memory" and record.info.get("source") and not record.info.get("weights"):
        name = Path(str(record.info["source"])).name  # a checkpoint's file name, not its server-side path
    return name


def public_card(record: ModelRecord) -> dict[str, Any]:
    """The model card in the HTTP API's field names (``serve.schemas.ModelCard``): the same
    meaning, reference and level bands as :func:`model_card`, without server-side paths;
    the service adds only its runtime and limits."""
    card = _meaning(record.reference)
    bands = card["levels"] or [{"level": n, "from": None, "to": None} for n in levels.LEVELS]
    return {
        "arch": record.arch or "unknown", "weights": display_name(record),
        "weights_format": record.info.get("format") or ("onnx export" if record.kind == "onnx" else "iipa checkpoint"),
        "profile": record.profile.to_dict(), "input_size": record.profile.input_size, "crops": record.crops,
        "score_meaning": card["score_meaning"], "score_range": card["score_range"],
        "scaled_meaning": card["scaled"], "compare_meaning": card["compare"],
        "reference": card["reference"],
        "levels": [{"name": b["level"], "min_score": b["from"], "max_score": b["to"]} for b in bands],
        "level_edges": [b["from"] for b in bands[1:]] if card["levels"] else None,
        "paper": card["paper"],
    }


_KIND = {"named": "named weights", "checkpoint": "iipa checkpoint", "state_dict": "plain state dict",
         "onnx": "onnx", "memory": "in memory"}


def _pretrained(arch: str | None) -> Any:
    """The backbone's ImageNet weights as the registry names them (no torch: the backbone
    registry is read only when torch is already imported)."""
    import sys

    if arch is None or "iipa.backbones.popularity_net" not in sys.modules:
        return None
    from iipa.backbones.popularity_net import get_backbone, list_backbones

    return get_backbone(arch).pretrained if arch in list_backbones() else None


def format_card(card: dict[str, Any]) -> str:
    """The card as text a person reads: Markdown sections and tables (see :mod:`iipa.cardtext`)."""
    from iipa.cardtext import render_card

    return render_card(card)
