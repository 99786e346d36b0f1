"""Jinja2 templates (package data) with escaping on; Markdown through markdown-it-py."""

from __future__ import annotations

from importlib import resources

from iipa.study.report import _md_table, html_report
from iipa.templating import markdown_html, render


def test_every_template_is_package_data_and_escapes():
    names = {p.name for p in resources.files("iipa").joinpath("templates").iterdir()}
    assert {"base.html", "album.html", "demo_report.html", "study_report.html", "study_admin.html"} <= names
    page = render("base.html", title="<script>alert(1)</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_markdown_tables_keep_escaped_pipes_and_escape_html():
    import pandas as pd

    table = _md_table(pd.DataFrame({"group": ["a|b", "<i>c</i>"], "n": [1, 2]}))
    html = str(markdown_html(table))
    assert "<td>a|b</td>" in html and "&lt;i&gt;c&lt;/i&gt;" in html and html.count("<tr>") == 3
    page = html_report("# Study\n\n" + table + "\n")
    assert "<h1>Study</h1>" in page and "<table>" in page
