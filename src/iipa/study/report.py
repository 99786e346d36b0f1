"""Write a study analysis to a folder: report.md, report.html, results.json, CSV tables, SVG
charts (:mod:`iipa.plots`) and a PNG of example pairs (photos; matplotlib, Agg backend). Nothing
is fetched from the network; every file goes through the output policy."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from iipa.csvsafe import frame_to_csv
from iipa.fileio import atomic_open, atomic_path, write_text
from iipa.plots import bar_chart_svg, histogram_svg, write_svg
from iipa.study.analysis import CATEGORIES, StudyResults
from iipa.templating import render

THUMB = 96


def _fmt(v: object, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _cell(text: str) -> str:
    """A Markdown table cell: a pipe inside a value must not split the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame, index: bool = False, digits: int = 1) -> str:
    d = df.reset_index() if index else df
    head = "| " + " | ".join(_cell(str(c)) for c in d.columns) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    rows = ["| " + " | ".join(_cell(_fmt(v, digits)) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def plot_accuracies(res: StudyResults, path: Path) -> Path:
    """Histogram of single-subject accuracies with the majority and model lines (SVG)."""
    acc = (100 * res.per_participant["accuracy"]).tolist()
    marks = [(float(res.table4.loc["mean", "Majority"]), "majority vote")]
    if res.model_accuracy is not None:
        marks.append((100 * res.model_accuracy, "model"))
    lo = min([*acc, *(m for m, _ in marks)], default=0.0)
    hi = max([*acc, *(m for m, _ in marks)], default=100.0)
    pad = (hi - lo) * 0.05 or 5.0
    svg = histogram_svg(acc, title="Single-subject accuracy", xlabel="pairwise accuracy (%)", bins=15,
                        xlim=(lo - pad, hi + pad), edges=marks, bar_label="participants", ylabel="participants")
    return write_svg(svg, path)


def plot_groups(res: StudyResults, path: Path) -> Path:
    """Table 4 as bars with one-std error bars (SVG)."""
    t = res.table4
    std = t.loc["std"].fillna(0).astype(float)
    svg = bar_chart_svg([str(c) for c in t.columns], t.loc["mean"].astype(float).tolist(), title="Table 4",
                        ylabel="accuracy (%)", errors=list(zip(std, std)), ylim=(0.0, 100.0), hline=(50.0, "chance"))
    return write_svg(svg, path)


def plot_examples(res: StudyResults, pairs: pd.DataFrame, path: Path) -> Path | None:
    """Fig. 9 style: example pairs per category, more popular image on the right."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = [(c, r) for c in CATEGORIES for r in res.examples.get(c, pd.DataFrame()).itertuples()]
    if not rows:
        return None
    where = dict(zip(pairs["high_id"], pairs["high_path"], strict=True)) | dict(
        zip(pairs["low_id"], pairs["low_path"], strict=True))
    fig, axes = plt.subplots(len(rows), 2, figsize=(4, 2 * len(rows)), squeeze=False)
    for (cat, r), (ax_low, ax_high) in zip(rows, axes, strict=True):
        for ax, pid, share, score in ((ax_low, r.low_id, 1 - r.human_high, r.score_low),
                                      (ax_high, r.high_id, r.human_high, r.score_high)):
            try:
                with Image.open(where[pid]) as im:
                    ax.imshow(np.asarray(im.convert("RGB")))
            except (OSError, KeyError):
                pass
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{100 * share:.0f}% · {score:.2f}", fontsize=8)
        ax_low.set_ylabel(cat, fontsize=7)
    fig.suptitle("humans % in favour · model score (right: more likes)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    # photos, not a chart: a raster image, written through the output policy
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def markdown(res: StudyResults, plots: list[str]) -> str:
    t = res.table4.copy()
    parts = ["# 2AFC study analysis", "",
             f"{int(t.loc['n', 'Single'])} participants included, {len(res.excluded)} excluded by "
             f"attention checks{': ' + ', '.join(res.excluded) if res.excluded else ''}; "
             f"{len(res.per_pair)} trial pairs.", "",
             "## Table 4: pairwise accuracy (%)", "", _md_table(t.rename_axis("accuracy (%)"), index=True), "",
             "## Welch t-tests", "", _md_table(res.tests, digits=4), ""]
    if res.model_accuracy is not None:
        parts += ["## Model on the same pairs", "", f"Model accuracy: {100 * res.model_accuracy:.1f}%", ""]
    if res.categories is not None:
        parts += ["## Fig. 9 categories", "", _md_table(res.categories), ""]
        for name in CATEGORIES:
            ex = res.examples.get(name)
            if ex is not None and len(ex):
                cols = ["pair_id", "high_id", "low_id", "human_high", "score_high", "score_low"]
                parts += [f"### Examples: {name}", "", _md_table(ex[cols], digits=2), ""]
    if res.scale is not None:
        parts += ["## Bradley-Terry scale (top 10 of "
                  f"{len(res.scale)} images; 95% Wald intervals; full table in scale.csv)", "",
                  _md_table(res.scale.head(10), digits=2), ""]
    parts += [f"![{p}]({p})" for p in plots]
    return "\n".join(parts) + "\n"


def html_report(md_text: str) -> str:
    """A self-contained HTML rendering of the Markdown (markdown-it-py: tables, headings, images)."""
    return render("study_report.html", title="2AFC study analysis", markdown_text=md_text)


def write_report(res: StudyResults, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every output; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"accuracy_plot": plot_accuracies(res, out / "accuracy.svg"),
             "groups_plot": plot_groups(res, out / "groups.svg")}
    if res.examples:
        ex = plot_examples(res, res.pairs, out / "examples.png")
        if ex is not None:
            files["examples_plot"] = ex
    tables = {"participants": res.per_participant, "pairs": res.per_pair}
    if res.scale is not None:
        tables["scale"] = res.scale
    for name, table in tables.items():
        with atomic_open(out / f"{name}.csv", "w", newline="") as fh:
            frame_to_csv(table, fh)
        files[name] = out / f"{name}.csv"
    md = markdown(res, [p.name for k, p in files.items() if k.endswith("_plot")])
    write_text(out / "report.md", md)
    write_text(out / "report.html", html_report(md))
    summary = res.summary() | {"table4": json.loads(res.table4.to_json())}
    write_text(out / "results.json", json.dumps(summary, indent=1) + "\n")
    files |= {"markdown": out / "report.md", "html": out / "report.html", "json": out / "results.json"}
    return files
