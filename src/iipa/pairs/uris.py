"""Paths or URIs: which posts and outputs are local files, and which live elsewhere."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two characters at least: C:\ is a path


def is_uri(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names its file system (``hdfs://...``, ``file:/...``)."""
    return isinstance(spec, str) and bool(_SCHEME.match(spec))


def local_path(spec: str | os.PathLike) -> Path | None:
    """``spec`` as a local path (a plain path or a ``file:`` URI), else None."""
    if not is_uri(spec):
        return Path(spec)
    url = urlparse(str(spec))
    return Path(unquote(url.path)) if url.scheme == "file" and url.netloc in ("", "localhost") else None
