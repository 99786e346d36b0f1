"""One training run per folder: an ``fcntl`` lock on ``<out>/.iipa-train.lock``.

Two ``iipa train`` runs on one ``--out`` used to both run to the end, interleaving
``metrics.jsonl`` and overwriting each other's ``train_state.pt``. The second now stops
at once (exit 2) naming the holder's pid and start time. The kernel drops the lock when
its process dies (even by ``kill -9``), so a crashed run never blocks the next one; the
file itself stays (deleting it would race with a run taking it).

Under torchrun only rank 0 takes it. A stray ``RANK=1`` in the environment must not turn
the lock off, so a process counts as a non-zero rank only inside a complete launch:
WORLD_SIZE > 1, 0 < RANK < WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set, and
torchrun's TORCHELASTIC_RUN_ID set or torch.distributed already initialised.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from iipa.errors import IIPAError
from iipa.output import ensure_out_dir

LOCK_NAME = ".iipa-train.lock"


class RunLocked(IIPAError):
    """Another process trains in this folder."""


def _holder(fh) -> str:
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        info = {}
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started_at', '?')}"
            if info else "a process that has not written its details yet")


def launched_rank() -> int:
    """This process's rank in a real torchrun/DDP launch (see the module doc), else 0."""
    env = os.environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        int(env["LOCAL_RANK"])
        int(env["MASTER_PORT"])
    except (KeyError, ValueError):
        return 0
    if not (world > 1 and 0 <= rank < world and env.get("MASTER_ADDR")):
        return 0
    dist = sys.modules.get("torch.distributed")  # never imported here: the lock stays torch-free
    initialised = dist is not None and dist.is_available() and dist.is_initialized()
    return rank if env.get("TORCHELASTIC_RUN_ID") or initialised else 0


@contextlib.contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's training lock for the block; :class:`RunLocked` if taken.

    Under torchrun only rank 0 takes it (the other ranks are the same run).
    """
    if launched_rank() != 0:
        yield
        return
    path = ensure_out_dir(out) / LOCK_NAME
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{Path(out)}: another `iipa train` is using this folder ({_holder(fh)}); "
                            "wait for it, or give another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()  # an ended run leaves no holder recorded (the file stays: deleting it races)
    finally:
        fh.close()  # closing releases the lock
