"""Progress bars: one policy for every command and trainer (:func:`progress`: shown when stderr is a terminal)."""

from __future__ import annotations

import sys
from typing import Any


def progress(total: int, *, enabled: bool | None, desc: str, unit: str = "img", initial: int = 0) -> Any:
    """A tqdm bar on stderr, shown when stderr is a terminal unless ``enabled`` says otherwise."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not show, file=sys.stderr,
                dynamic_ncols=True)
