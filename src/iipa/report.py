"""Album report: a self-contained HTML contact sheet sorted by score, and the score histogram
with its fitted Gaussian (paper Fig. 5).

The HTML has no external resource at all (no CDN, no fonts, no scripts): thumbnails,
heatmaps and the histogram are embedded as ``data:`` URIs, so the file can be mailed or
opened offline and still shows everything.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from iipa import levels
from iipa.errors import ImageError
from iipa.fileio import printable, write_bytes, write_text
from iipa.images import open_image
from iipa.scoring import ScoreResult
from iipa.templating import data_uri, render  # noqa: F401 - data_uri: public since the album had it

if TYPE_CHECKING:  # `iipa rank` without --heatmaps scores through onnxruntime, without torch
    from iipa.models import PopularityNet

LEVEL_COLOURS = {"poor": "#c0392b", "bad": "#e67e22", "fair": "#7f8c8d", "good": "#27ae60", "excellent": "#2471a3"}


@dataclass
class AlbumEntry:
    """One row of the album; thumbnails are JPEG bytes (None when the image failed)."""

    result: ScoreResult
    thumbnail: bytes | None = None
    heatmap: bytes | None = None


# The album's Gaussian is a reference distribution like a model's (one definition, ddof=1).
fit_gaussian = levels.reference_distribution


def score_histogram(scores: Sequence[float], *, reference: dict[str, Any] | None = None,
                    title: str = "Score distribution") -> bytes:
    """PNG of the histogram of ``scores`` (density) with the fitted Gaussian; with a
    ``reference``, the four level edges are drawn and the bands named."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = [s for s in scores if s is not None and math.isfinite(s)]
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fit = fit_gaussian(finite)
    if finite:
        spread = 3 * fit["std"] if fit and fit["std"] > 0 else 1.0
        lo = min(min(finite), (fit or {"mean": finite[0]})["mean"] - spread)
        hi = max(max(finite), (fit or {"mean": finite[0]})["mean"] + spread)
        ax.hist(finite, bins=min(30, max(5, len(finite) // 3)), density=True, color="#9dc3e6",
                edgecolor="#5b9bd5", lw=0.5, label=f"{len(finite)} images")
        ax.set_xlim(lo, hi)
    if fit and fit["std"] > 0:
        xs = np.linspace(lo, hi, 300)
        pdf = np.exp(-0.5 * ((xs - fit["mean"]) / fit["std"]) ** 2) / (fit["std"] * math.sqrt(2 * math.pi))
        ax.plot(xs, pdf, color="#c0392b", lw=2,
                label=f"Gaussian fit: mean {fit['mean']:.3g}, std {fit['std']:.3g}")
    drawn = 0
    if reference:
        left, right = ax.get_xlim()
        for edge, name in zip(levels.level_edges(reference), levels.LEVELS[1:], strict=True):
            if left < edge < right:
                drawn += 1
                ax.axvline(edge, color="#555", ls="--", lw=0.8)
                ax.text(edge, 0.02, f" {name}", transform=ax.get_xaxis_transform(), va="bottom", fontsize=7)
    ax.set_xlabel("score (dashed: where the model's levels begin)" if drawn else "score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def jpeg_thumbnail(img: Image.Image, size: int) -> bytes:
    """JPEG bytes of ``img`` shrunk to fit ``size`` x ``size``."""
    img = img.copy()
    img.thumbnail((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def build_album(results: Sequence[ScoreResult], *, model: PopularityNet | None = None,
                thumb_size: int = 320) -> list[AlbumEntry]:
    """Entries sorted by score (best first, failures last) with thumbnails; with ``model``
    also Grad-CAM overlays (computed on the draft-decoded image: the CAM has the network's
    resolution anyway)."""
    if model is not None:  # Grad-CAM needs PyTorch; an album without heatmaps does not
        from iipa.explain import explain

    ok = sorted((r for r in results if r.ok), key=lambda r: r.score, reverse=True)
    entries = []
    for r in ok + [r for r in results if not r.ok]:
        entry = AlbumEntry(r)
        if r.ok:
            try:
                draft = model.profile.draft_size if model is not None else (thumb_size, thumb_size)
                img = open_image(r.source, draft_size=(max(draft[0], thumb_size), max(draft[1], thumb_size)))
                entry.thumbnail = jpeg_thumbnail(img, thumb_size)
                if model is not None:
                    entry.heatmap = jpeg_thumbnail(explain(model, img).overlay(0.5), thumb_size)
            except ImageError as exc:  # vanished or changed since it was scored
                entry.result = ScoreResult(r.source, r.score, f"{exc.reason} (thumbnail)", r.scaled, r.level)
        entries.append(entry)
    return entries


def album_html(entries: Sequence[AlbumEntry], *, title: str = "iipa album",
               histogram_png: bytes | None = None, summary: str = "") -> str:
    """The contact sheet as one HTML string (everything embedded; template ``album.html``)."""
    cards, rank = [], 0
    for e in entries:
        rank += e.result.ok
        cards.append({"result": e.result, "rank": rank if e.result.ok else None, "thumbnail": e.thumbnail,
                      "heatmap": e.heatmap, "name": printable(os.path.basename(e.result.source)),
                      "source": printable(e.result.source)})  # non-UTF-8 names as \xNN, as in every table
    width = 320 if any(e.heatmap for e in entries) else 180
    return render("album.html", title=title, summary=summary, histogram_png=histogram_png, cards=cards,
                  width=width, colours=LEVEL_COLOURS)


def write_album(results: Sequence[ScoreResult], path: str | os.PathLike, *,
                model: PopularityNet | None = None, heatmaps: bool = False, thumb_size: int = 320,
                histogram_path: str | os.PathLike | None = None, title: str | None = None,
                all_scores: Sequence[float] | None = None) -> dict[str, Any]:
    """Write the HTML album (and the histogram PNG beside it). Returns paths and the fit.

    ``all_scores``: what the histogram and fit describe when ``results`` is only a top-N.
    """
    path = Path(path)
    reference = model.reference if model is not None else None
    scores = list(all_scores) if all_scores is not None else [r.score for r in results if r.ok]
    png = score_histogram(scores, reference=reference)
    fit = fit_gaussian(scores)
    entries = build_album(results, model=model if heatmaps else None, thumb_size=thumb_size)
    failed = sum(not r.ok for r in results)
    summary = f"{sum(r.ok for r in results)} images ranked by predicted intrinsic popularity, best first"
    if failed:
        summary += f"; {failed} could not be scored"
    if model is not None:
        summary += f". Model: {model.arch} ({model.info.get('source') or model.info.get('weights') or 'in memory'})"
    if fit:
        summary += f". All {fit['n']} scores: mean {fit['mean']:.3f}, std {fit['std']:.3f}"
    if reference:
        summary += (f". Levels and x/100 use the reference mean {float(reference['mean']):.3g}, "
                    f"std {float(reference['std']):.3g}")
    write_text(path, album_html(entries, title=title or f"iipa album: {path.stem}", histogram_png=png,
                                summary=summary))
    hist_path = Path(histogram_path) if histogram_path else path.with_name(path.stem + ".histogram.png")
    write_bytes(hist_path, png)
    return {"report": path, "histogram": hist_path, "fit": fit}
