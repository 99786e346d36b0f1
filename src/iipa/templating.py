"""HTML pages and reports from Jinja2 templates (package data in ``iipa/templates/``).

Escaping is always on: every value a template shows (file names, titles, errors, study
names) is HTML-escaped unless it is already markup. Markdown is rendered by markdown-it-py
(CommonMark plus tables, raw HTML in the source escaped), never by hand.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup


def data_uri(data: bytes, mime: str) -> str:
    """Embed bytes in HTML: the page needs no file beside it and no network."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


@cache
def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> Markup:
    """Markdown (with pipe tables) as safe HTML."""
    return Markup(_markdown().render(text))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("iipa", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["data_uri"] = data_uri
    env.filters["markdown"] = markdown_html
    return env


def render(template: str, **context: Any) -> str:
    """Render ``iipa/templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)
