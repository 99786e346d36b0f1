"""The SVG charts of the reports (no matplotlib in the core install)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from iipa.plots import Line, inline, line_chart_svg, nice_ticks

NS = "{http://www.w3.org/2000/svg}"


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(-0.99, 1.71) == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert nice_ticks(0.4, 1.0) == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert nice_ticks(3.0, 3.0) == [3.0]


def test_line_chart_with_a_second_axis():
    svg = line_chart_svg([Line([0, 10, 20], [0.69, 0.5, None], "training loss", "#888"),
                          Line([10, 20], [0.6, 0.8], "validation <accuracy>", axis="right", marker=True)],
                         title="Training", xlabel="step", ylabel="loss", y2label="pairwise accuracy", y2lim=(0.4, 1.0))
    root = ET.fromstring(svg)
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 2 and len(root.findall(f"{NS}circle")) == 2  # the None point is left out
    texts = {t.text for t in root.iter(f"{NS}text")}
    assert {"Training", "step", "loss", "pairwise accuracy", "validation <accuracy>", "0.4", "1"} <= texts
    # the right axis maps 0.8 higher on the page than 0.6 (SVG y grows downwards)
    (x1, y1), (x2, y2) = (tuple(map(float, p.split(","))) for p in lines[1].get("points").split())
    assert x2 > x1 and y2 < y1
    assert "&lt;accuracy&gt;" in svg  # labels are escaped
    assert "xmlns" in svg and "xmlns" not in inline(svg)
