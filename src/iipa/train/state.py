"""Resumable training state and the run folder's files.

A run folder holds::

    train_state.pt   everything needed to continue (weights, optimizer, scheduler, RNG,
                     step, epoch, position in the epoch); one file written atomically, so
                     a SIGKILL leaves either the previous state or the new one
    last.pt          the latest model as an iipa checkpoint (config + metrics inside)
    best.pt          the model with the best validation pairwise accuracy so far
    metrics.jsonl    one JSON object per logged step, validation and event
    summary.json     written when training ends

Every file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import torch

from iipa import fileio
from iipa.errors import IIPAError
from iipa.model.checkpoint import atomic_torch_save

STATE = "train_state.pt"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(run: Path, payload: dict[str, Any]) -> Path:
    return atomic_torch_save(payload, run / STATE)


def load_state(run: Path) -> dict[str, Any] | None:
    path = run / STATE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged state file must be named
        raise IIPAError(f"{path}: cannot resume from this training state ({exc.__class__.__name__}: {exc}); "
                        "delete it to start over") from None


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (flushed per line, so a kill loses nothing written)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, **row: Any) -> None:
        if not self.enabled:
            return
        row.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_json(path: Path, obj: Any) -> None:
    fileio.write_text(path, json.dumps(obj, indent=2) + "\n")
