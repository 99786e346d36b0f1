"""Progress of long work: a tqdm bar on a terminal, a line every few seconds elsewhere.

A bar is useless in a log file or a CI job (tqdm draws it with carriage returns, and iipa
kept it off when stderr was not a terminal, so a 10-minute training printed nothing between
its first line and its last). When stderr is not a terminal, :func:`progress` returns a
:class:`LogProgress` instead: the same small interface (``update``, ``set_postfix``,
``close``, a context manager), writing ``iipa: STAGE: done/total unit (pct), rate, ETA`` on
stderr every ``IIPA_PROGRESS_SECONDS`` seconds (default 10; 0 turns the lines off), from a
timer thread, so a line comes even while one long step runs. :func:`heartbeat` is the same
for work with no count (a DuckDB or Spark job): the stage and the time spent.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

PROGRESS_ENV = "IIPA_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0


def log_interval() -> float:
    """Seconds between progress lines when stderr is not a terminal (0: none)."""
    text = os.environ.get(PROGRESS_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS
    return value if value >= 0 else DEFAULT_SECONDS


def progress(total: int | None, *, enabled: bool | None, desc: str, unit: str = "img", initial: int = 0) -> Any:
    """A progress reporter on stderr. ``enabled`` None (the CLI's default): a tqdm bar on a
    terminal, else a :class:`LogProgress`; True: a tqdm bar wherever stderr goes; False: nothing."""
    from tqdm import tqdm

    terminal = sys.stderr is not None and sys.stderr.isatty()
    if enabled is None and not terminal:
        return LogProgress(total, desc=desc, unit=unit, initial=initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not terminal if enabled is None else not enabled,
                file=sys.stderr, dynamic_ncols=True)


def heartbeat(desc: str) -> LogProgress:
    """``with heartbeat("building pairs"):`` a line every interval while the block runs, when
    stderr is not a terminal (on a terminal the work's own output shows it is alive)."""
    terminal = sys.stderr is not None and sys.stderr.isatty()
    return LogProgress(None, desc=desc, every=0.0 if terminal else None)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class LogProgress:
    """tqdm's interface as a line every ``every`` seconds (default :func:`log_interval`)."""

    def __init__(self, total: int | None, *, desc: str, unit: str = "img", initial: int = 0,
                 every: float | None = None, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.every = log_interval() if every is None else every
        self.stream = stream
        self.postfix = ""
        self.start = time.monotonic()
        self.lines = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self.every > 0:
            self._thread = threading.Thread(target=self._tick, name=f"iipa-progress-{desc}", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            if self.total is not None and self.n >= self.total:
                return  # finished: close() says so (and an unclosed reporter stops ticking)
            self._emit()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total is None:
            text = f"iipa: {self.desc}: {_duration(elapsed)} so far"
        else:
            done = self.n - self.initial
            pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            text = f"iipa: {self.desc}: {self.n:,}/{self.total:,} {self.unit}{pct}"
            if done > 0 and elapsed > 0:
                rate = done / elapsed
                text += f", {rate:.3g} {self.unit}/s, ETA {_duration(max(0, self.total - self.n) / rate)}"
            else:
                text += f", {_duration(elapsed)} so far"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def _emit(self) -> None:
        with self._lock:
            stream = self.stream or sys.stderr
            if stream is None:
                return
            print(self.line(), file=stream, flush=True)
            self.lines += 1

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        """Stop the timer; a log that had progress lines gets the closing one."""
        if self._thread is None:
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self.lines:
            took = _duration(time.monotonic() - self.start)
            count = "" if self.total is None else f"{self.n:,}/{self.total:,} {self.unit} "
            with self._lock:
                stream = self.stream or sys.stderr
                if stream is not None:
                    print(f"iipa: {self.desc}: {count}done in {took}", file=stream, flush=True)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
