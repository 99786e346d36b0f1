"""The demo's ``report.html``: every figure embedded, no external resource, findings stated as measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup
from PIL import Image

from iipa.fileio import write_text
from iipa.levels import LEVELS
from iipa.plots import Line, inline, line_chart_svg
from iipa.report import jpeg_thumbnail
from iipa.templating import render


def _pct(acc: dict[str, Any] | None) -> str:
    if not acc or acc.get("accuracy") is None:
        return "—"
    ci = acc.get("ci95") or [None, None]
    text = f"{100 * acc['accuracy']:.1f}%"
    if ci[0] is not None:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text + f" (n={acc.get('n', '?')})"


def training_curve(run_dir: Path) -> str | None:
    """SVG of the training loss (left axis) and the training and validation accuracy (right)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("event") == "train"]
    val = [r for r in rows if r.get("event") == "val"]
    if len({r["step"] for r in train} | {r["step"] for r in val}) < 2:
        return None  # one fit (the default recipe's probe): a point, not a curve
    lines = []
    if train:
        lines.append(Line([r["step"] for r in train], [r.get("loss") for r in train], "training loss", "#888"))
    if train and "accuracy" in train[0]:
        lines.append(Line([r["step"] for r in train], [r["accuracy"] for r in train], "training accuracy", "#9ab",
                          axis="right"))
    if val:
        lines.append(Line([r["step"] for r in val], [r["val_accuracy"] for r in val], "validation accuracy",
                          "#2471a3", axis="right", marker=True))
    if not lines:
        return None
    return line_chart_svg(lines, title="Training", xlabel="step", ylabel="loss", y2label="pairwise accuracy",
                          y2lim=(0.4, 1.0))


def setup_sentence(config: Any) -> str:
    """How the ranker was made, in words: its backbone's starting weights and its recipe."""
    weights = {"none": "random initial weights", "imagenet": "ImageNet weights"}.get(
        str(config.pretrained), f"{config.pretrained} weights")
    if config.recipe == "paper":
        how = f"paper recipe (end-to-end fine-tuning, {config.epochs or 'its default number of'} epochs)"
    else:
        how = f"{config.recipe} recipe (a linear probe on frozen features, fitted once: no epochs)"
    return f"Backbone {config.backbone} ({weights}), {how}"


NO_CURVE = {"paper": "No training metrics were logged.",
            "default": "The default recipe fits its linear probe once on cached features: there is no training "
                       "curve to draw (the accuracy table above gives its result)."}


def _findings(m: dict[str, Any]) -> list[str]:
    out = []
    r_true = (m["ranker"].get("vs_true_order") or {}).get("accuracy")
    b_true = (m["baseline"].get("vs_true_order") or {}).get("accuracy")
    r_lab = (m["ranker"].get("vs_pdip_labels") or {}).get("accuracy")
    b_lab = (m["baseline"].get("vs_pdip_labels") or {}).get("accuracy")
    agree = m["label_agreement_with_truth"].get("test")
    if agree is not None:
        out.append(f"PDIP labels agree with the simulator's true intrinsic order on {100 * agree:.1f}% of test pairs: "
                   "a model that knew the true intrinsic popularity would score about that against the labels.")
    if r_lab is not None:
        out.append(f"The PDIP-trained ranker orders {100 * r_lab:.1f}% of test PDIPs like their labels "
                   f"(chance: 50%).")
    r_acc, b_acc = m["ranker"].get("vs_true_order"), m["baseline"].get("vs_true_order")
    if r_true is not None and b_true is not None:
        out.append(f"Against the true intrinsic order: PDIP-trained ranker {100 * r_true:.1f}%, absolute-likes "
                   f"baseline {100 * b_true:.1f}% (the paper's §4.2 claim is that the ranker wins). "
                   + _verdict(r_acc, b_acc))
    elif b_lab is not None and r_lab is not None:
        out.append(f"On the PDIP labels: ranker {100 * r_lab:.1f}%, baseline {100 * b_lab:.1f}%. "
                   + _verdict(m["ranker"].get("vs_pdip_labels"), m["baseline"].get("vs_pdip_labels")))
    return out


def _verdict(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """Say whether two accuracies are separated by their 95% intervals, not only which is larger."""
    if not a or not b or not a.get("ci95") or not b.get("ci95"):
        return ""
    if a["ci95"][0] > b["ci95"][1]:
        return "In this run the ranker is better, and the 95% intervals do not overlap."
    if b["ci95"][0] > a["ci95"][1]:
        return "In this run the baseline is better, and the 95% intervals do not overlap: the claim does not hold here."
    leader = "ranker" if a["accuracy"] > b["accuracy"] else "baseline"
    return f"The {leader} is ahead, but the 95% intervals overlap, so this run does not separate them."


def write_report(path: Path, m: dict[str, Any], *, run_dir: Path, scored: pd.DataFrame, model_path: Path,
                 config: Any) -> Path:
    from iipa.model.record import load_model
    from iipa.report import score_histogram

    model = load_model(model_path)
    ok = scored[scored["error"].isna()] if "error" in scored else scored
    base = m["baseline"]
    context = {
        "title": "iipa demo report", "seconds": m["seconds"], "config": config, "findings": _findings(m),
        "setup": setup_sentence(config), "no_curve": NO_CURVE.get(config.recipe, NO_CURVE["paper"]),
        "table1": [(str(k), f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in (m.get("table1") or {}).items()],
        "pairs_per_split": ", ".join(f"{k} {v}" for k, v in m["pairs"].items()),
        "accuracy_rows": [(name, _pct(lab), _pct(tru)) for name, lab, tru in (
            ("PDIP-trained ranker (Siamese, paper §3.2)", m["ranker"].get("vs_pdip_labels"), m["ranker"].get("vs_true_order")),
            ("absolute-likes baseline (paper §4.2 ablation)", base.get("vs_pdip_labels"), base.get("vs_true_order")),
            ("baseline's image scalar alone", base.get("image_scalar_vs_pdip_labels"), None))],
        "pearson_train": base.get("pearson_r_train") or float("nan"),
        "pearson_test": base.get("pearson_r_test") or float("nan"),
        "spearman": m["ranker"].get("spearman_with_true_intrinsic", float("nan")),
        "curve_svg": Markup(inline(training_curve(run_dir) or "")),
        "histogram_svg": Markup(inline(score_histogram(ok["score"].tolist(), reference=model.reference,
                                                       title="Test-image scores"))),
        "levels": _level_examples(ok, config.examples_per_level),
        "gradcam": _gradcam_examples(model, ok, config.gradcam_examples),
        "config_json": json.dumps(m.get("config"), indent=2),
    }
    return write_text(path, render("demo_report.html", **context))


def _level_examples(ok: pd.DataFrame, k: int) -> list[tuple[str, int, list[tuple[bytes, str]]]]:
    """Paper Fig. 6: the top-k images of each level, best level first."""
    out = []
    for lev in reversed(LEVELS):
        group = ok[ok["level"] == lev].sort_values("score", ascending=False).head(k)
        examples = [(jpeg_thumbnail(Image.open(row["path"]).convert("RGB"), 170),
                     f"score {row['score']:.2f} · {row['scaled']:.0f}/100 · true {row['intrinsic']:+.2f}")
                    for _, row in group.iterrows()]
        out.append((lev, int((ok["level"] == lev).sum()), examples))
    return out


def _gradcam_examples(model, ok: pd.DataFrame, k: int) -> list[tuple[bytes, str]]:
    """Paper Fig. 7: Grad-CAM overlays of the best and the worst scored images."""
    from iipa.explain import heatmap_overlay

    ranked = ok.sort_values("score", ascending=False)
    chosen = pd.concat([ranked.head(k // 2 + k % 2), ranked.tail(k // 2)])
    return [(jpeg_thumbnail(heatmap_overlay(model, row["path"]), 170), f"score {row['score']:.2f} ({row['level']})")
            for _, row in chosen.iterrows()]
