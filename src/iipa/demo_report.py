"""The demo's ``report.html``: every figure embedded, no external resource, findings stated as measured."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from iipa.levels import LEVELS
from iipa.report import data_uri, jpeg_thumbnail

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3} .num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:.6rem} figure{margin:0;width:170px;font-size:.8rem}
figure img{width:170px;height:auto;display:block} img.plot{max-width:100%} .finding{margin:.3rem 0}
"""


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _pct(acc: dict[str, Any] | None) -> str:
    if not acc or acc.get("accuracy") is None:
        return "—"
    ci = acc.get("ci95") or [None, None]
    text = f"{100 * acc['accuracy']:.1f}%"
    if ci[0] is not None:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text + f" (n={acc.get('n', '?')})"


def training_curve(run_dir: Path) -> bytes | None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("event") == "train"]
    val = [r for r in rows if r.get("event") == "val"]
    fig = Figure(figsize=(6.4, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot([r["step"] for r in train], [r.get("loss") for r in train], label="training loss", color="#888")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    if train and "accuracy" in train[0]:
        ax2.plot([r["step"] for r in train], [r["accuracy"] for r in train], label="training accuracy", color="#9ab")
    if val:
        ax2.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], "o-", label="validation accuracy",
                 color="#2471a3")
    ax2.set_ylabel("pairwise accuracy")
    ax2.set_ylim(0.4, 1.0)
    fig.legend(loc="lower right", fontsize=8)
    return _png(fig)


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
    from iipa.explain import heatmap_overlay
    from iipa.report import score_histogram
    from iipa.weights import load_model

    model = load_model(model_path)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>iipa demo report</title><style>{_CSS}</style>"
             "</head><body><h1>iipa demo: intrinsic image popularity on a simulated social network</h1>",
             f"<p>Finished in {m['seconds']:.0f} s. Backbone <b>{esc(config.backbone)}</b> "
             f"({esc(config.pretrained)} weights), {config.epochs} epochs, images {config.image_size} px, seed "
             f"{config.seed}. Everything ran offline on the CPU.</p>", "<h2>Findings</h2>"]
    parts += [f"<p class='finding'>{esc(f)}</p>" for f in _findings(m)]

    parts.append("<h2>PDIP database (paper Table 1)</h2><table>")
    for key, value in (m.get("table1") or {}).items():
        shown = f"{value:.4g}" if isinstance(value, float) else esc(str(value))
        parts.append(f"<tr><th>{esc(str(key))}</th><td class='num'>{shown}</td></tr>")
    parts.append("</table><p>Pairs per split: " + ", ".join(f"{k} {v}" for k, v in m["pairs"].items()) + "</p>")

    parts.append("<h2>Test pairwise accuracy (95% CI)</h2><table><tr><th>model</th><th>vs PDIP labels</th>"
                 "<th>vs true intrinsic order</th></tr>")
    rows = [("PDIP-trained ranker (Siamese, paper §3.2)", m["ranker"].get("vs_pdip_labels"), m["ranker"].get("vs_true_order")),
            ("absolute-likes baseline (paper §4.2 ablation)", m["baseline"].get("vs_pdip_labels"), m["baseline"].get("vs_true_order")),
            ("baseline's image scalar alone", m["baseline"].get("image_scalar_vs_pdip_labels"), None)]
    for name, lab, tru in rows:
        parts.append(f"<tr><td>{esc(name)}</td><td class='num'>{_pct(lab)}</td><td class='num'>{_pct(tru)}</td></tr>")
    parts.append("<tr><td>chance</td><td class='num'>50%</td><td class='num'>50%</td></tr></table>")
    parts.append(f"<p>Baseline Pearson r (predicted vs actual log likes): train "
                 f"{m['baseline'].get('pearson_r_train') or float('nan'):.3f}, test "
                 f"{m['baseline'].get('pearson_r_test') or float('nan'):.3f}. Ranker scores vs true intrinsic "
                 f"popularity on test images: Spearman {m['ranker'].get('spearman_with_true_intrinsic', float('nan')):.3f}.</p>")

    parts.append("<h2>Training curve</h2>")
    curve = training_curve(run_dir)
    parts.append(f"<img class='plot' alt='training curve' src='{data_uri(curve, 'image/png')}'>" if curve else
                 "<p>No training metrics were logged.</p>")

    ok = scored[scored["error"].isna()] if "error" in scored else scored
    parts.append("<h2>Score histogram with fitted Gaussian (paper Fig. 5)</h2>")
    hist = score_histogram(ok["score"].tolist(), reference=model.reference, title="Test-image scores")
    parts.append(f"<img class='plot' alt='score histogram' src='{data_uri(hist, 'image/png')}'>")

    parts.append("<h2>Examples per popularity level (paper Fig. 6)</h2>")
    for lev in reversed(LEVELS):
        group = ok[ok["level"] == lev].sort_values("score", ascending=False).head(config.examples_per_level)
        parts.append(f"<h3>{lev} ({int((ok['level'] == lev).sum())} images)</h3><div class='grid'>")
        for _, row in group.iterrows():
            img = Image.open(row["path"])
            parts.append(f"<figure><img alt='{esc(lev)}' src='{data_uri(jpeg_thumbnail(img.convert('RGB'), 170), 'image/jpeg')}'>"
                         f"<figcaption>score {row['score']:.2f} · {row['scaled']:.0f}/100 · true "
                         f"{row['intrinsic']:+.2f}</figcaption></figure>")
        parts.append("</div>")

    parts.append("<h2>Grad-CAM: what drives the score (paper Fig. 7)</h2><div class='grid'>")
    ranked = ok.sort_values("score", ascending=False)
    k = config.gradcam_examples
    for _, row in pd.concat([ranked.head(k // 2 + k % 2), ranked.tail(k // 2)]).iterrows():
        over = heatmap_overlay(model, row["path"])
        parts.append(f"<figure><img alt='heatmap' src='{data_uri(jpeg_thumbnail(over, 170), 'image/jpeg')}'>"
                     f"<figcaption>score {row['score']:.2f} ({esc(str(row['level']))})</figcaption></figure>")
    parts.append("</div>")
    parts.append("<h2>Configuration</h2><pre>" + esc(json.dumps(m.get("config"), indent=2)) + "</pre></body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path
