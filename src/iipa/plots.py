"""Every chart iipa draws, as SVG: histograms with fitted curves and marked edges, line charts
with a second axis, bar charts with error bars, reliability diagrams.

One format for every report: SVG text written with numpy instead of matplotlib (≈ 78 MB
installed), so the core install's reports need nothing beyond it; an HTML report places it
inline (it scales, and its text stays text), a Markdown report links the ``.svg`` file, and
:func:`write_svg` writes one through the output policy. Every label is XML-escaped. The
legend sits in a row above the plot area, where it can cover no data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 60, 60, 50, 48  # plot margins in pixels (the legend row is in TOP)
SVG_NS = "http://www.w3.org/2000/svg"
FONT = "font-family='sans-serif' font-size='11'"
TITLE_FONT = "font-family='sans-serif' font-size='13'"
SMALL_FONT = "font-family='sans-serif' font-size='9'"


@dataclass
class Line:
    """A polyline; ``axis`` "right" uses the chart's second y axis; ``marker`` draws dots."""

    xs: Sequence[float]
    ys: Sequence[float | None]
    label: str
    colour: str = "#c0392b"
    axis: str = "left"
    marker: bool = False


def inline(svg: str) -> str:
    """``svg`` for placing inside HTML: HTML5 puts ``<svg>`` in the SVG namespace by itself,
    so the declaration (the page's only URL) goes."""
    return svg.replace(f" xmlns='{SVG_NS}'", "", 1)


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, n)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class _Frame:
    """Data → pixel mapping of one chart and the SVG elements drawn so far."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float], title: str) -> None:
        self.xlim, self.ylim = xlim, ylim
        self.parts = [f"<svg xmlns='{SVG_NS}' viewBox='0 0 {WIDTH} {HEIGHT}' "
                      f"width='{WIDTH}' height='{HEIGHT}' role='img' aria-label='{escape(title)}'>",
                      f"<rect width='{WIDTH}' height='{HEIGHT}' fill='white'/>",
                      f"<text x='{WIDTH / 2}' y='20' text-anchor='middle' {TITLE_FONT}>{escape(title)}</text>"]

    def x(self, v: float) -> float:
        lo, hi = self.xlim
        return LEFT + (v - lo) / (hi - lo or 1.0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float, ylim: tuple[float, float] | None = None) -> float:
        lo, hi = ylim or self.ylim
        return HEIGHT - BOTTOM - (v - lo) / (hi - lo or 1.0) * (HEIGHT - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str, y2: tuple[tuple[float, float], str] | None = None,
             xticks: bool = True) -> None:
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
        p = self.parts
        p.append(f"<rect x='{x0}' y='{y1}' width='{x1 - x0}' height='{y0 - y1}' fill='none' stroke='#333'/>")
        for t in nice_ticks(*self.xlim) if xticks else ():
            p.append(f"<line x1='{self.x(t):.1f}' x2='{self.x(t):.1f}' y1='{y0}' y2='{y0 + 4}' stroke='#333'/>"
                     f"<text x='{self.x(t):.1f}' y='{y0 + 16}' text-anchor='middle' {FONT}>{_fmt(t)}</text>")
        for t in nice_ticks(*self.ylim):
            p.append(f"<line x1='{x0 - 4}' x2='{x0}' y1='{self.y(t):.1f}' y2='{self.y(t):.1f}' stroke='#333'/>"
                     f"<text x='{x0 - 6}' y='{self.y(t) + 4:.1f}' text-anchor='end' {FONT}>{_fmt(t)}</text>")
        p.append(f"<text x='{(x0 + x1) / 2}' y='{HEIGHT - 12}' text-anchor='middle' {FONT}>{escape(xlabel)}</text>")
        p.append(f"<text transform='translate(16 {(y0 + y1) / 2}) rotate(-90)' text-anchor='middle' {FONT}>"
                 f"{escape(ylabel)}</text>")
        if y2 is not None:
            lim, label = y2
            for t in nice_ticks(*lim):
                p.append(f"<line x1='{x1}' x2='{x1 + 4}' y1='{self.y(t, lim):.1f}' y2='{self.y(t, lim):.1f}' "
                         f"stroke='#333'/><text x='{x1 + 6}' y='{self.y(t, lim) + 4:.1f}' {FONT}>{_fmt(t)}</text>")
            p.append(f"<text transform='translate({WIDTH - 14} {(y0 + y1) / 2}) rotate(90)' text-anchor='middle' "
                     f"{FONT}>{escape(label)}</text>")

    def line(self, line: Line, ylim: tuple[float, float] | None = None) -> None:
        pts = [(self.x(x), self.y(y, ylim)) for x, y in zip(line.xs, line.ys)
               if y is not None and math.isfinite(y) and math.isfinite(x)]
        if len(pts) > 1:
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            self.parts.append(f"<polyline points='{coords}' fill='none' stroke='{line.colour}' stroke-width='2'/>")
        if line.marker or len(pts) == 1:
            self.parts += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{line.colour}'/>" for a, b in pts]

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        """One row between the title and the plot area (a legend inside it covered bars)."""
        x, y = float(LEFT), TOP - 10
        for label, colour in entries:
            self.parts.append(f"<rect x='{x:.0f}' y='{y - 8}' width='12' height='8' fill='{colour}'/>"
                              f"<text x='{x + 16:.0f}' y='{y}' {FONT}>{escape(label)}</text>")
            x += 16 + 6.2 * len(label) + 14  # about 6 px per character at 11 px sans-serif

    def svg(self) -> str:
        return "\n".join(self.parts + ["</svg>"])


def histogram_svg(values: Sequence[float], *, title: str, xlabel: str, bins: int, xlim: tuple[float, float],
                  curves: Sequence[Line] = (), edges: Sequence[tuple[float, str]] = (),
                  bar_label: str = "", ylabel: str = "density") -> str:
    """A histogram of ``values`` over ``xlim`` (density, or counts with ``ylabel`` other than
    "density") with ``curves`` drawn over it and dashed vertical ``edges`` (position, name)."""
    density = ylabel == "density"
    counts, bounds = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=xlim, density=density) \
        if len(values) else (np.zeros(bins), np.linspace(*xlim, bins + 1))
    top = max([float(counts.max()) if len(counts) else 0.0]
              + [max((y for y in c.ys if y is not None), default=0.0) for c in curves]) or 1.0
    frame = _Frame(xlim, (0.0, top * 1.08), title)
    for h, a, b in zip(counts, bounds[:-1], bounds[1:]):
        if h > 0:
            frame.parts.append(f"<rect x='{frame.x(a):.1f}' y='{frame.y(h):.1f}' width='{frame.x(b) - frame.x(a):.1f}'"
                               f" height='{frame.y(0) - frame.y(h):.1f}' fill='#9dc3e6' stroke='#5b9bd5' "
                               f"stroke-width='0.5'/>")
    for c in curves:
        frame.line(c)
    for pos, name in edges:
        if xlim[0] < pos < xlim[1]:
            frame.parts.append(f"<line x1='{frame.x(pos):.1f}' x2='{frame.x(pos):.1f}' y1='{TOP}' "
                               f"y2='{HEIGHT - BOTTOM}' stroke='#555' stroke-dasharray='4 3'/>"
                               f"<text x='{frame.x(pos) + 3:.1f}' y='{HEIGHT - BOTTOM - 4}' "
                               f"{SMALL_FONT}>{escape(name)}</text>")
    frame.axes(xlabel, ylabel)
    frame.legend(([(bar_label, "#9dc3e6")] if bar_label else []) + [(c.label, c.colour) for c in curves])
    return frame.svg()


def line_chart_svg(lines: Sequence[Line], *, title: str, xlabel: str, ylabel: str,
                   y2label: str = "", y2lim: tuple[float, float] | None = None) -> str:
    """Lines over a shared x axis; those with ``axis="right"`` use ``y2lim`` (or their own range)."""
    def span(vals: list[float]) -> tuple[float, float]:
        if not vals:
            return (0.0, 1.0)
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        return (lo - pad, hi + pad)

    def finite(ls: Sequence[Line], attr: str) -> list[float]:
        return [float(v) for ln in ls for v in getattr(ln, attr) if v is not None and math.isfinite(v)]

    left = [ln for ln in lines if ln.axis == "left"]
    right = [ln for ln in lines if ln.axis == "right"]
    xs = finite(lines, "xs")
    frame = _Frame((min(xs), max(xs)) if xs and max(xs) > min(xs) else span(xs), span(finite(left, "ys")), title)
    y2 = y2lim or span(finite(right, "ys"))
    for ln in left:
        frame.line(ln)
    for ln in right:
        frame.line(ln, y2)
    frame.axes(xlabel, ylabel, (y2, y2label) if right else None)
    frame.legend([(ln.label, ln.colour) for ln in lines])
    return frame.svg()


def bar_chart_svg(labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str,
                  errors: Sequence[tuple[float, float]] | None = None, ylim: tuple[float, float] | None = None,
                  hline: tuple[float, str] | None = None, xlabel: str = "") -> str:
    """One bar per label; ``errors``: (below, above) whisker lengths; ``hline``: a dashed
    reference line (value, name), e.g. chance."""
    vals = [float(v) for v in values]
    tops = [v + (errors[i][1] if errors else 0.0) for i, v in enumerate(vals)]
    lo, hi = ylim or (min(0.0, *vals) if vals else 0.0, (max(tops) * 1.1 if tops else 1.0) or 1.0)
    frame = _Frame((0.0, float(max(1, len(vals)))), (lo, hi), title)
    width = (frame.x(1) - frame.x(0)) * 0.6
    for i, (label, v) in enumerate(zip(labels, vals)):
        cx = frame.x(i + 0.5)
        frame.parts.append(f"<rect x='{cx - width / 2:.1f}' y='{frame.y(max(v, lo)):.1f}' width='{width:.1f}' "
                           f"height='{max(0.0, frame.y(lo) - frame.y(max(v, lo))):.1f}' fill='#9dc3e6' "
                           f"stroke='#5b9bd5'/>")
        if errors:
            a, b = frame.y(max(lo, v - errors[i][0])), frame.y(min(hi, v + errors[i][1]))
            frame.parts.append(f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{a:.1f}' y2='{b:.1f}' stroke='#333'/>"
                               f"<line x1='{cx - 5:.1f}' x2='{cx + 5:.1f}' y1='{b:.1f}' y2='{b:.1f}' stroke='#333'/>"
                               f"<line x1='{cx - 5:.1f}' x2='{cx + 5:.1f}' y1='{a:.1f}' y2='{a:.1f}' stroke='#333'/>")
        frame.parts.append(f"<text x='{cx:.1f}' y='{HEIGHT - BOTTOM + 16}' text-anchor='middle' {SMALL_FONT}>"
                           f"{escape(str(label))}</text>")
    if hline is not None and lo < hline[0] < hi:
        frame.parts.append(f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{frame.y(hline[0]):.1f}' "
                           f"y2='{frame.y(hline[0]):.1f}' stroke='#777' stroke-dasharray='4 3'/>")
    frame.axes(xlabel, ylabel, xticks=False)  # categories: their labels stand for ticks
    if hline is not None:
        frame.legend([(hline[1], "#777")])
    return frame.svg()


def reliability_svg(metrics: dict, *, title: str = "Reliability") -> str:
    """A reliability diagram of :func:`iipa.calibration.calibration_metrics`: per confidence bin,
    the share of picks that were right (bar) at the bin's mean confidence (dot), with its count;
    the diagonal is perfect calibration."""
    frame = _Frame((0.5, 1.0), (0.0, 1.0), f"{title}: ECE {metrics['ece']:.3f}, accuracy "
                                            f"{metrics['accuracy']:.3f}, n {metrics['n']}")
    for row in metrics["bins"]:
        if not row["n"]:
            continue
        left, right, top = frame.x(row["low"]), frame.x(row["high"]), frame.y(row["accuracy"])
        frame.parts.append(f"<rect x='{left + 2:.1f}' y='{top:.1f}' width='{right - left - 4:.1f}' "
                           f"height='{frame.y(0) - top:.1f}' fill='#c9d9f2' stroke='#2848a0'/>"
                           f"<circle cx='{frame.x(row['confidence']):.1f}' cy='{top:.1f}' r='3' fill='#c0392b'/>"
                           f"<text x='{(left + right) / 2:.1f}' y='{frame.y(0) - 4:.1f}' text-anchor='middle' "
                           f"{SMALL_FONT}>{row['n']}</text>")
    frame.parts.append(f"<line x1='{frame.x(0.5):.1f}' y1='{frame.y(0.5):.1f}' x2='{frame.x(1.0):.1f}' "
                       f"y2='{frame.y(1.0):.1f}' stroke='#999' stroke-dasharray='4 3'/>")
    frame.axes("confidence of the picked photo (model P)", "accuracy: share of picks that were right")
    frame.legend([("accuracy per bin (count inside)", "#c9d9f2"), ("mean confidence in the bin", "#c0392b"),
                  ("perfect calibration", "#999")])
    return frame.svg()


def write_svg(svg: str, path: str | Path) -> Path:
    """Write a chart as a standalone ``.svg`` file through the output policy (atomic replace)."""
    from iipa.fileio import write_text

    return write_text(path, svg)
