"""The model card as text a person reads: Markdown sections and tables, numbers formatted,
no Python reprs. Renders :func:`iipa.modelcard.model_card`'s dict (what ``--format json``
prints), so both views hold the same facts; every section is named after its card key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

# Rows of a result table (an accuracy with its interval and counts); other keys are listed below it.
_RESULT_COLUMNS = ("accuracy", "ci95", "pairs", "users", "accounts", "note")
_DECODE_MEANING = {"exact": "exact (JPEGs decoded at full size)",
                   "draft": "draft (libjpeg scales JPEGs down in the DCT, both sides kept >= the resize size)"}


def fmt(value: Any) -> str:
    """One value as a person writes it: 0.6964, 42,405, yes, 0.668-0.724, a, b; '-' for none."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{label(k)} {fmt(v)}" for k, v in value.items()) or "–"
    if isinstance(value, Sequence) and not isinstance(value, str):
        inner = [fmt(v) for v in value]
        return (" | ".join(f"({x})" for x in inner) if any(isinstance(v, (list, tuple)) for v in value)
                else ", ".join(inner)) or "–"
    return str(value).replace("\n", " ")


def label(key: str) -> str:
    """A key as words: ``training_accounts`` -> ``training accounts`` (users are accounts here)."""
    return str(key).replace("_", " ").replace("users", "accounts")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table; cells are formatted with :func:`fmt` and '|' escaped."""
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else fmt(v)).replace("|", "\\|") or "–"

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def facts(mapping: Mapping[str, Any]) -> list[str]:
    """A two-column table of a flat mapping (nested mappings become dotted rows)."""
    rows: list[tuple[str, Any]] = []

    def walk(prefix: str, m: Mapping[str, Any]) -> None:
        for k, v in m.items():
            name = f"{prefix}{label(k)}"
            if isinstance(v, Mapping) and v:
                walk(name + " · ", v)
            else:
                rows.append((name, v))

    walk("", mapping)
    return table(("fact", "value"), rows)


def _interval(ci: Any) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if isinstance(ci, (list, tuple)) and len(ci) == 2 else fmt(ci)


def _accuracy(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else fmt(value)


def results(block: Mapping[str, Any]) -> list[str]:
    """Accuracy rows (mappings with an ``accuracy``) as one table, their texts and extra facts below."""
    rows, notes, texts = [], [], []
    for name, r in block.items():
        if isinstance(r, Mapping) and "accuracy" in r:
            rows.append((label(name), _accuracy(r["accuracy"]), _interval(r.get("ci95")), fmt(r.get("pairs")),
                         fmt(r.get("users", r.get("accounts"))), fmt(r.get("note"))))
            extra = {k: v for k, v in r.items() if k not in (*_RESULT_COLUMNS, "what")}
            if extra:
                notes.append(f"- {label(name)}: " + "; ".join(f"{label(k)} {fmt(v)}" for k, v in extra.items()))
            if r.get("what"):
                texts.append(f"- {label(name)}: {fmt(r['what'])}")
        elif not isinstance(r, Mapping):
            texts.append(f"{label(name).capitalize()}: {fmt(r)}")
    texts, whats = [t for t in texts if not t.startswith("- ")], [t for t in texts if t.startswith("- ")]
    out = [*texts, ""] if texts else []
    if rows:
        out += table(("set", "accuracy", "95 % interval", "pairs", "accounts", "note"), rows) + [""]
    return out + whats + notes


def _section(title: str, body: list[str]) -> list[str]:
    return ["", f"## {title}", "", *body] if body else []


def _model(card: Mapping[str, Any]) -> list[str]:
    domain = card.get("domain")
    rows = [("name", card["name"]), ("kind", card["kind"]), ("architecture", card.get("arch")),
            ("parameters", card.get("parameters")), ("weights", card.get("weights_source")),
            ("backends", card.get("backends")),
            ("trained on", f"{domain} images" + (" (rendered shapes: not for real photos)"
                                                  if domain == "simulated" else "") if domain else None),
            ("about", card.get("description")), ("homepage", card.get("homepage")),
            ("ONNX file", card.get("onnx_file")), ("sha256", card.get("sha256"))]
    if card.get("meta"):
        rows += [(label(k), v) for k, v in card["meta"].items()]
    return table(("", ""), [r for r in rows if r[1] not in (None, "", [])])


def _preprocessing(card: Mapping[str, Any]) -> list[str]:
    p = card["profile"]
    decode = card.get("decode") or p.get("decode")
    return table(("", ""), [("profile", f"{p['name']}: {p.get('description') or ''}".rstrip(": ")),
                            ("resize", f"{p.get('resize')} {p.get('size')}"
                                       + (f", crop {p['crop']}" if p.get("crop") else "")),
                            ("normalisation", f"mean {fmt(p['mean'])}, std {fmt(p.get('std'))}"
                                              if p.get("mean") else "none (pixels in [0, 1])"),
                            ("decoding", _DECODE_MEANING.get(decode, decode)),
                            ("views per image", f"{card['crops']} by default (--crops)")])


def _meaning(card: Mapping[str, Any]) -> list[str]:
    lines = [card["score_meaning"], "", f"Range: {card['score_range']}.", "", card["compare"]]
    ref = card.get("reference")
    if not ref:
        return lines + ["", "Reference: none, so scaled scores and levels are not available for this model."]
    lines += ["", f"Reference distribution: mean {float(ref['mean']):.4g}, std {float(ref['std']):.4g}"
              + (f", n {fmt(ref.get('n'))}" if ref.get("n") else "")
              + (f" ({ref['source']})" if ref.get("source") else "") + ".", "", card["scaled"] + ".", ""]
    bands = [(b["level"], "–∞" if b["from"] is None else f"{b['from']:.3g}",
              "+∞" if b["to"] is None else f"{b['to']:.3g}") for b in card["levels"]]
    return lines + table(("level", "score from", "score to"), bands)


def _calibration(cal: Mapping[str, Any]) -> list[str]:
    names = {"T": "temperature T", "fitted_on": "fitted on", "n": "pairs it was fitted on"}
    before_after = sorted({k.rsplit("_", 1)[0] for k in cal if k.endswith(("_before", "_after"))})
    rows = [(names.get(k, label(k)), v) for k, v in cal.items() if not k.endswith(("_before", "_after"))]
    out = table(("", ""), rows)
    if before_after:
        metric = {"ece": "expected calibration error", "log_loss": "log-loss", "brier": "Brier score"}
        out += ["", *table(("metric", "before", "after"), [(metric.get(m, label(m)), cal.get(f"{m}_before"),
                                                            cal.get(f"{m}_after")) for m in before_after])]
    return out


def _baselines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return table(("method", "pairwise accuracy", "source"),
                 [(r.get("method"), _accuracy(r.get("accuracy")), r.get("source")) for r in rows])


def _validation(val: Mapping[str, Any]) -> list[str]:
    out = results(val)
    for name, block in val.items():
        if isinstance(block, Mapping) and "accuracy" not in block:
            out += ["", f"### {label(name).capitalize()}", "", *results(block)]
    return out


# Section title -> the card key (``--format json``) that holds its facts.
SECTIONS = {"Model": "name", "Preprocessing": "profile", "What the score means": "score_meaning",
            "Calibration": "calibration", "Training data": "training_data", "Accuracy": "validation",
            "Baselines": "baselines", "Limits": "limits", "Training config": "training",
            "Training metrics": "training", "Other facts": "info"}


def render_card(card: Mapping[str, Any]) -> str:
    """Every section of the card that has something to say, in reading order."""
    training = card.get("training") or {}
    bodies = {
        "Model": _model(card), "Preprocessing": _preprocessing(card), "What the score means": _meaning(card),
        "Calibration": _calibration(card["calibration"]) if card.get("calibration") else [],
        "Training data": facts(card["training_data"]) if card.get("training_data") else [],
        "Accuracy": _validation(card["validation"]) if card.get("validation") else [],
        "Baselines": _baselines(card["baselines"]) if card.get("baselines") else [],
        "Limits": [f"- {fmt(x)}" for x in card.get("limits") or []],
        "Training config": facts(training["config"]) if training.get("config") else [],
        "Training metrics": facts(training["metrics"]) if training.get("metrics") else [],
        "Other facts": facts(card["info"]) if card.get("info") else [],
    }
    parts = [f"# Model card: {os.path.basename(str(card['name']))}"]  # its full path is in the Model table
    if card.get("warning"):
        parts += ["", f"> Warning: {card['warning']}."]
    for title in SECTIONS:
        parts += _section(title, bodies[title])
    return "\n".join(parts)
