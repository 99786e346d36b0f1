"""Model cards: what a model's score means, its range and reference, and how it was made.

One function, :func:`model_card`, reads a model's :class:`~iipa.record.ModelRecord` (checkpoints,
named weights, exported ONNX files and in-memory models alike), so the CLI (``iipa
model-info``), the HTTP service and reports all say the same thing. Nothing is built or
downloaded for a card: the default model's card imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iipa import levels
from iipa.onnx_format import INPUT_DOC
from iipa.record import ModelRecord, resolve_model

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


def warn_if_simulated(record: ModelRecord, who: str) -> bool:
    """One stderr line when a model trained on simulated images is about to score real files."""
    if record.domain != "simulated":
        return False
    import sys

    print(f"{who}: warning: this model was trained on simulated images (the demo's rendered shapes); "
          "its scores say nothing about real photos. Use the default model for real photos.", file=sys.stderr)
    return True


def model_card(spec: Any) -> dict[str, Any]:
    """The card of a model: a :class:`~iipa.record.ModelRecord` or anything
    :func:`~iipa.record.resolve_model` takes. Read from the record only: named weights that
    are not downloaded are described from the registry, and no model is built."""
    record = resolve_model(spec, offline=True)
    info = dict(record.info)
    card: dict[str, Any] = {
        "name": record.name, "kind": _KIND[record.kind], "arch": record.arch,
        "backbone_imagenet_weights": _pretrained(record.arch),
        "profile": record.profile.to_dict(), "crops": record.crops,
        "weights_source": info.get("source") or info.get("weights") or "in memory",
        "backends": list(record.backends), "domain": record.domain,
        **_meaning(record.reference),
        "calibration": dict(record.calibration) if record.calibration else None,
        "training": {"config": info.get("config"), "metrics": info.get("metrics")},
        **{k: info[k] for k in CARD_FIELDS if k in info},
        "info": {k: v for k, v in info.items() if k not in ("config", "metrics", "domain", *CARD_FIELDS)},
    }
    if record.parameters is not None:
        card["parameters"] = record.parameters
    if record.kind == "onnx":
        card.update(file_bytes=record.onnx_file.stat().st_size, input=INPUT_DOC,
                    precision=record.onnx_precision)
    if record.entry is not None:
        entry, cached = record.entry, record.torch_file
        card.update(description=entry.description, homepage=entry.homepage, meta=dict(entry.meta),
                    sha256=entry.sha256, packaged=entry.packaged, cache_path=str(cached), cached=cached.is_file(),
                    onnx_file=str(record.onnx_file) if record.onnx_file else None)
        if not cached.is_file() and record.onnx_file is None:
            card["kind"] = "named weights (not downloaded)"
            card["weights_source"] = entry.url
    return card


def public_card(record: ModelRecord) -> dict[str, Any]:
    """The model card in the HTTP API's field names (``serve.schemas.ModelCard``): the same
    meaning, reference and level bands as :func:`model_card`, without server-side paths;
    the service adds only its runtime and limits."""
    card = _meaning(record.reference)
    bands = card["levels"] or [{"level": n, "from": None, "to": None} for n in levels.LEVELS]
    name = record.name if record.kind in ("named", "memory") else Path(record.name).name
    if record.kind == "memory" and record.info.get("source") and not record.info.get("weights"):
        name = Path(str(record.info["source"])).name  # a checkpoint's file name, not its server-side path
    return {
        "arch": record.arch or "unknown", "weights": name,
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

    if arch is None or "iipa.models" not in sys.modules:
        return None
    from iipa.models import get_backbone, list_backbones

    return get_backbone(arch).pretrained if arch in list_backbones() else None


def format_card(card: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`model_card`."""
    lines = [f"model      {card['name']}  ({card['kind']})", f"arch       {card['arch']}"]
    if "parameters" in card:
        lines.append(f"parameters {card['parameters']:,}")
    p = card["profile"]
    lines.append(f"profile    {p['name']}: {p.get('description') or p}")
    lines.append(f"views      {card['crops']} per image by default (--crops)")
    lines.append(f"weights    {card['weights_source']}")
    if card.get("backends"):
        lines.append(f"backends   {', '.join(card['backends'])}")
    if card.get("calibration"):
        lines.append("calibrated " + ", ".join(f"{k}={v}" for k, v in card["calibration"].items()))
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
