"""Small SVG charts for the self-contained HTML reports: histograms with fitted curves and
marked edges, line charts with a second axis.

Written as SVG text with numpy instead of matplotlib (≈ 78 MB installed), so that the core
install's album report needs nothing beyond it; the SVG is placed inline in the HTML (it
scales, and its text stays text). Every label is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 60, 60, 34, 48  # plot margins in pixels
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

    def axes(self, xlabel: str, ylabel: str, y2: tuple[tuple[float, float], str] | None = None) -> None:
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
        p = self.parts
        p.append(f"<rect x='{x0}' y='{y1}' width='{x1 - x0}' height='{y0 - y1}' fill='none' stroke='#333'/>")
        for t in nice_ticks(*self.xlim):
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
        for i, (label, colour) in enumerate(entries):
            y = TOP + 14 + 15 * i
            self.parts.append(f"<rect x='{WIDTH - RIGHT - 250}' y='{y - 8}' width='12' height='8' fill='{colour}'/>"
                              f"<text x='{WIDTH - RIGHT - 234}' y='{y}' {FONT}>{escape(label)}</text>")

    def svg(self) -> str:
        return "\n".join(self.parts + ["</svg>"])


def histogram_svg(values: Sequence[float], *, title: str, xlabel: str, bins: int, xlim: tuple[float, float],
                  curves: Sequence[Line] = (), edges: Sequence[tuple[float, str]] = (),
                  bar_label: str = "") -> str:
    """A density histogram of ``values`` over ``xlim`` with ``curves`` drawn over it and
    dashed vertical ``edges`` (position, name) inside the range."""
    counts, bounds = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=xlim, density=True) \
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
    frame.axes(xlabel, "density")
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
