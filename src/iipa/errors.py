"""Errors that reach users. Each one says what is wrong and where."""

from __future__ import annotations


class IIPAError(Exception):
    """A user-facing error: bad input, a missing file, an unusable option.

    Entry points turn it into a one-line message (CLI: exit code 2; HTTP: 4xx).
    """


class ImageError(IIPAError):
    """One image could not be read; ``reason`` is a short machine-readable tag."""

    def __init__(self, source: str, reason: str, detail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        text = f"{source}: {reason}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


class WeightsError(IIPAError):
    """Weights could not be found, downloaded, verified or loaded."""


def debug() -> bool:
    """IIPA_DEBUG=1 (or yes/true/on) shows tracebacks and tools' own logs; unset, empty, 0, no,
    false, off do not."""
    import os

    return os.environ.get("IIPA_DEBUG", "").strip().lower() not in ("", "0", "no", "false", "off")
