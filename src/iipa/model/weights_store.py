"""The weights cache's bookkeeping: the offline switch and the checksums recorded on download.

Named weights whose publisher gives no checksum (the authors' ResNet-50) are trusted on
first use: the SHA-256 of the first download that passed verification is written to
``sha256.json`` beside the files, and ``iipa weights verify`` later compares the file with
it (or with the registry's checksum when there is one), so a corrupted or swapped file is
noticed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from iipa.fileio import write_text

OFFLINE_ENV = "IIPA_OFFLINE"
CHECKSUMS = "sha256.json"


def offline() -> bool:
    """True when downloads are switched off (``IIPA_OFFLINE=1`` or ``iipa --offline``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def recorded_sha256(path: str | os.PathLike) -> str | None:
    """The checksum recorded for the cached file ``path`` (None if never recorded)."""
    path = Path(path)
    return _read(path.parent).get(path.name)


def record_sha256(path: str | os.PathLike, digest: str) -> None:
    """Remember ``digest`` as the checksum of the cached file ``path`` (written atomically)."""
    path = Path(path)
    table = _read(path.parent)
    table[path.name] = digest
    # a temp name of its own per writer (fileio), so two processes recording at once never share one
    write_text(path.parent / CHECKSUMS, json.dumps(table, indent=2, sort_keys=True) + "\n")


def _read(folder: Path) -> dict[str, str]:
    try:
        table = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}
