"""Album report: a self-contained HTML contact sheet sorted by score, and the score histogram
with its fitted Gaussian (paper Fig. 5).

The HTML has no external resource at all (no CDN, no fonts, no scripts): thumbnails and
heatmaps are embedded as ``data:`` URIs and the histogram as inline SVG, so the file can be
mailed or opened offline and still shows everything.
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
from markupsafe import Markup
from PIL import Image

from iipa import levels
from iipa.errors import ImageError
from iipa.fileio import printable, write_text
from iipa.images import open_image
from iipa.model.record import ModelRecord, resolve_model
from iipa.modelcard import display_name
from iipa.plots import Line, histogram_svg, inline
from iipa.scoring import ScoreResult
from iipa.templating import render

if TYPE_CHECKING:  # `iipa rank` without --heatmaps scores through onnxruntime, without torch
    from iipa.backbones.popularity_net import PopularityNet

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
                    title: str = "Score distribution") -> str:
    """SVG of the histogram of ``scores`` (density) with the fitted Gaussian; with a
    ``reference``, the four level edges are drawn and the bands named."""
    finite = [s for s in scores if s is not None and math.isfinite(s)]
    fit = fit_gaussian(finite)
    lo, hi = -1.0, 1.0
    if finite:
        centre = fit["mean"] if fit else finite[0]
        spread = 3 * fit["std"] if fit and fit["std"] > 0 else 1.0
        lo, hi = min(min(finite), centre - spread), max(max(finite), centre + spread)
    curves = []
    if fit and fit["std"] > 0:
        xs = np.linspace(lo, hi, 200)
        pdf = np.exp(-0.5 * ((xs - fit["mean"]) / fit["std"]) ** 2) / (fit["std"] * math.sqrt(2 * math.pi))
        curves.append(Line(xs.tolist(), pdf.tolist(), f"Gaussian fit: mean {fit['mean']:.3g}, std {fit['std']:.3g}"))
    edges = list(zip(levels.level_edges(reference), levels.LEVELS[1:], strict=True)) if reference else []
    drawn = any(lo < edge < hi for edge, _ in edges)
    return histogram_svg(finite, title=title, bins=min(30, max(5, len(finite) // 3)), xlim=(lo, hi),
                         curves=curves, edges=edges, bar_label=f"{len(finite)} images",
                         xlabel="score (dashed: where the model's levels begin)" if drawn else "score")


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


def shown_names(sources: Sequence[str]) -> list[str]:
    """Each source relative to the folder all of them are in (its file name when alone), so a
    report names photos as the person knows them and embeds no absolute local path."""
    if not sources:
        return []
    folders = [os.path.dirname(os.path.abspath(s)) for s in sources]
    try:
        root = os.path.commonpath(folders)
    except ValueError:  # different drives: no common folder
        return [os.path.basename(s) for s in sources]
    return [os.path.relpath(os.path.abspath(s), root) for s in sources]


def album_html(entries: Sequence[AlbumEntry], *, title: str = "iipa album",
               histogram_svg: str | None = None, summary: str = "") -> str:
    """The contact sheet as one HTML string (everything embedded; template ``album.html``)."""
    cards, rank = [], 0
    for e, shown in zip(entries, shown_names([e.result.source for e in entries]), strict=True):
        rank += e.result.ok
        cards.append({"result": e.result, "rank": rank if e.result.ok else None, "thumbnail": e.thumbnail,
                      "heatmap": e.heatmap, "name": printable(os.path.basename(e.result.source)),
                      "source": printable(shown)})  # non-UTF-8 names as \xNN, as in every table
    width = 320 if any(e.heatmap for e in entries) else 180
    return render("album.html", title=title, summary=summary, histogram_svg=Markup(inline(histogram_svg or "")), cards=cards,
                  width=width, colours=LEVEL_COLOURS)


def write_album(results: Sequence[ScoreResult], path: str | os.PathLike, *,
                record: ModelRecord | None = None, model: PopularityNet | None = None, heatmaps: bool = False,
                thumb_size: int = 320, histogram_path: str | os.PathLike | None = None, title: str | None = None,
                all_scores: Sequence[float] | None = None) -> dict[str, Any]:
    """Write the HTML album (and the histogram SVG beside it). Returns paths and the fit.

    ``record``: the model that scored ``results`` (named in the header; its reference draws
    the level edges), else ``model``'s; ``model``: the PyTorch model for ``heatmaps``.
    ``all_scores``: what the histogram and fit describe when ``results`` is only a top-N.
    """
    path = Path(path)
    if record is None and model is not None:
        record = resolve_model(model)
    reference = dict(record.reference) if record is not None and record.reference else None
    scores = list(all_scores) if all_scores is not None else [r.score for r in results if r.ok]
    svg = score_histogram(scores, reference=reference)
    fit = fit_gaussian(scores)
    entries = build_album(results, model=model if heatmaps else None, thumb_size=thumb_size)
    failed = sum(not r.ok for r in results)
    summary = f"{sum(r.ok for r in results)} images ranked by predicted intrinsic popularity, best first"
    if failed:
        summary += f"; {failed} could not be scored"
    if record is not None:
        summary += f". Model: {display_name(record)} ({record.arch or 'unknown architecture'})"
    if fit:
        summary += f". All {fit['n']} scores: mean {fit['mean']:.3f}, std {fit['std']:.3f}"
    if reference:
        summary += (f". Levels and x/100 use the reference mean {float(reference['mean']):.3g}, "
                    f"std {float(reference['std']):.3g}")
    write_text(path, album_html(entries, title=title or f"iipa album: {path.stem}", histogram_svg=svg,
                                summary=summary))
    hist_path = Path(histogram_path) if histogram_path else path.with_name(path.stem + ".histogram.svg")
    write_text(hist_path, svg)
    return {"report": path, "histogram": hist_path, "fit": fit}
