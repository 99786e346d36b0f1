"""Model cards: what a model's score means, its range and reference, and how it was made.

One function, :func:`model_card`, for checkpoints, named weights, exported ONNX files and
in-memory models, so the CLI (``iipa model-info``), the HTTP service and reports all say the
same thing. Named weights that are not downloaded yet are described from the registry,
without downloading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iipa import levels
from iipa.errors import IIPAError
from iipa.profiles import Profile

if TYPE_CHECKING:  # imported where a card is built: warn_if_simulated runs on torch-free paths
    from iipa.models import PopularityNet

SCORE_MEANING = (
    "Predicted intrinsic popularity (Ding, Ma & Wang 2019): how popular the image would be "
    "from its visual content alone, other factors (user, time, caption) held equal. Higher is "
    "more popular. The model was trained on pairs, so only differences and rankings between "
    "scores of the same model mean something: a score difference d = f(A) - f(B) is the "
    "predicted probability 1 / (1 + exp(-d)) that A is the more popular image (paper Eq. 7)."
)
SCORE_RANGE = "any real number (no bounds); its scale is set by the model, see reference"
# Written into shipped checkpoints' info (see benchmarks/ship_real_model.py) and shown as is.
CARD_FIELDS = ("training_data", "validation", "baselines", "limits")
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


def _profile(profile: Profile) -> dict[str, Any]:
    return profile.to_dict()


def model_domain(model: PopularityNet | Any) -> str:
    """``real`` (photos), ``simulated`` (rendered images: the demo) or ``unknown`` (older checkpoints).
    ``model``: anything with an ``info`` dict (a PopularityNet, an exported ONNX model)."""
    info = model.info or {}
    return str(info.get("domain") or (info.get("config") or {}).get("domain") or "unknown")


def warn_if_simulated(model: PopularityNet | Any, who: str) -> bool:
    """One stderr line when a model trained on simulated images is about to score real files."""
    if model_domain(model) != "simulated":
        return False
    import sys

    print(f"{who}: warning: this model was trained on simulated images (the demo's rendered shapes); "
          "its scores say nothing about real photos. Use the default model for real photos.", file=sys.stderr)
    return True


def card_for_model(model: PopularityNet, *, name: str | None = None) -> dict[str, Any]:
    from iipa.models import get_backbone

    info = dict(model.info)
    spec = get_backbone(model.arch)
    return {
        "name": name or info.get("weights") or info.get("source") or model.arch,
        "kind": "pytorch",
        "arch": model.arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "backbone_imagenet_weights": spec.pretrained,
        "profile": _profile(model.profile),
        "weights_source": info.get("source") or info.get("weights") or "in memory",
        "domain": model_domain(model),
        **_meaning(model.reference),
        "training": {"config": info.get("config"), "metrics": info.get("metrics")},
        **{k: info[k] for k in CARD_FIELDS if k in info},
        "info": {k: v for k, v in info.items() if k not in ("config", "metrics", "domain", *CARD_FIELDS)},
    }


def public_card(model: PopularityNet, *, name: str) -> dict[str, Any]:
    """The model card in the HTTP API's field names (``serve.schemas.ModelCard``): the same
    meaning, reference and level bands as :func:`card_for_model`, without server-side paths;
    the service adds only its runtime and limits."""
    card = _meaning(model.reference)
    bands = card["levels"] or [{"level": n, "from": None, "to": None} for n in levels.LEVELS]
    return {
        "arch": model.arch, "weights": name,
        "weights_format": model.info.get("format", "iipa checkpoint"),
        "profile": _profile(model.profile), "input_size": model.profile.input_size,
        "score_meaning": card["score_meaning"], "score_range": card["score_range"],
        "scaled_meaning": card["scaled"], "compare_meaning": card["compare"],
        "reference": card["reference"],
        "levels": [{"name": b["level"], "min_score": b["from"], "max_score": b["to"]} for b in bands],
        "level_edges": [b["from"] for b in bands[1:]] if card["levels"] else None,
        "paper": card["paper"],
    }


def model_card(spec: str | os.PathLike | PopularityNet) -> dict[str, Any]:
    """The card of a model given as a PopularityNet, checkpoint path, .onnx path or weights name."""
    from iipa.models import PopularityNet
    from iipa.weights import get_weights, is_registered, list_weights, load_model, weights_path

    if isinstance(spec, PopularityNet):
        return card_for_model(spec)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _onnx_card(path)
    if path.is_file():
        return card_for_model(load_model(path), name=os.fspath(path))
    if is_registered(spec):
        entry = get_weights(spec)
        cached = weights_path(entry)
        if cached.is_file():
            card = card_for_model(load_model(spec, download=False), name=spec)
        else:
            card = _entry_card(entry)
        if entry.domain:
            card["domain"] = entry.domain
        card.update({"description": entry.description, "homepage": entry.homepage, "meta": dict(entry.meta),
                     "sha256": entry.sha256, "packaged": entry.packaged, "cache_path": str(cached),
                     "cached": cached.is_file()})
        return card
    raise IIPAError(f"{os.fspath(spec)!r} is neither a checkpoint, an .onnx file nor named weights "
                    f"(known: {', '.join(list_weights())})")


def _entry_card(entry: Any) -> dict[str, Any]:
    """The card of named weights that are not downloaded yet, from their registry entry."""
    from iipa.models import get_backbone
    from iipa.profiles import get_profile

    return {"name": entry.name, "kind": "named weights (not downloaded)", "arch": entry.arch,
            "backbone_imagenet_weights": get_backbone(entry.arch).pretrained,
            "profile": _profile(get_profile(entry.profile)), "weights_source": entry.url,
            **_meaning(entry.reference or None), "training": None, "info": {}}


def _onnx_card(path: Path) -> dict[str, Any]:
    from iipa.export import INPUT_DOC, read_onnx_metadata

    meta = read_onnx_metadata(path)
    info = dict(meta["info"] or {})
    return {
        "name": str(path), "kind": "onnx", "arch": meta["arch"], "file_bytes": path.stat().st_size,
        "input": INPUT_DOC, "exported_by": f"iipa {meta['version']}",
        "profile": _profile(meta["profile"]), "weights_source": info.get("source") or str(path),
        **_meaning(meta["reference"]),
        "training": {"config": info.get("config"), "metrics": info.get("metrics")},
        "info": {k: v for k, v in info.items() if k not in ("config", "metrics")},
    }


def format_card(card: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`model_card`."""
    lines = [f"model      {card['name']}  ({card['kind']})", f"arch       {card['arch']}"]
    if "parameters" in card:
        lines.append(f"parameters {card['parameters']:,}")
    p = card["profile"]
    lines.append(f"profile    {p['name']}: {p.get('description') or p}")
    lines.append(f"weights    {card['weights_source']}")
    if card.get("domain"):
        lines.append(f"domain     {card['domain']}" + ("  (rendered shapes: not for real photos)"
                                                        if card["domain"] == "simulated" else ""))
    for key, label in (("description", "about"), ("homepage", "homepage"), ("cache_path", "cached at")):
        if card.get(key):
            lines.append(f"{label:10s} {card[key]}")
    lines += ["", "score      " + card["score_meaning"], "range      " + card["score_range"]]
    ref = card["reference"]
    if ref:
        lines.append(f"reference  mean {float(ref['mean']):.4g}, std {float(ref['std']):.4g}"
                     + (f"  ({ref['source']})" if ref.get("source") else ""))
        lines.append("scaled     " + card["scaled"])
        lines.append("levels     " + "  ".join(
            f"{b['level']}: {_bound(b['from'], '-inf')}..{_bound(b['to'], '+inf')}" for b in card["levels"]))
    else:
        lines.append("reference  none: scaled scores and levels are not available for this model")
    lines += _card_details(card)
    training = card.get("training") or {}
    for key in ("config", "metrics"):
        if training.get(key):
            lines.append(f"{key:10s} " + ", ".join(f"{k}={v}" for k, v in training[key].items()))
    return "\n".join(lines)


def _card_details(card: dict[str, Any]) -> list[str]:
    lines = []
    data = card.get("training_data")
    if data:
        lines.append("trained on " + ", ".join(f"{k}={v}" for k, v in data.items()))
    val = card.get("validation")
    if val:
        lines.append("validation " + ", ".join(f"{k}={v}" for k, v in val.items()))
    for row in card.get("baselines") or []:
        lines.append("  baseline " + ", ".join(f"{k}={v}" for k, v in row.items()))
    for limit in card.get("limits") or []:
        lines.append("limit      " + limit)
    return lines


def _bound(value: float | None, open_end: str) -> str:
    return open_end if value is None else f"{value:.3g}"
