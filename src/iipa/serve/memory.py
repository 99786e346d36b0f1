"""Memory the service may use for requests: one global budget of bytes that every image
decode and every multipart body being parsed must hold, and giving freed memory back to
the OS.

Why not bytes on the wire: a 5 MB request of 32 flat 7000x7000 PNGs decodes to 32 x 49 MP.
A decode holds the peak memory :func:`iipa.decodecost.peak_bytes` estimates from the image's
header (its decoded pixels times the measured bytes per pixel of its format and mode, plus
a progressive JPEG's coefficients); a multipart body holds what its parser may keep in RAM
(parts below the spooling threshold stay in memory), grown as its bytes arrive
(:class:`GrowingHold`), until the body has arrived. Parsing may
hold at most ``parse_share`` of the budget, so bodies being received can never leave no
room for decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import AsyncIterator


class MemoryBudget:
    """An async ledger of bytes: ``async with budget.hold(n)`` waits until ``n`` bytes are
    free (first come, first served), and gives them back on exit, even when the waiting or
    holding task is cancelled (a request timing out). ``hold(n, parsing=True)`` also stays
    within ``parse_share`` of the total."""

    def __init__(self, total: int, *, parse_share: float = 0.25) -> None:
        if total < 1:
            raise ValueError(f"memory budget must be at least 1 byte, got {total}")
        self.total = total
        self.parse_limit = max(1, int(total * parse_share))
        self.in_use = 0
        self.parsing = 0
        self.peak = 0
        self._cond: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._cond is None or self._loop is not loop:  # test clients run a loop per session
            self._cond, self._loop = asyncio.Condition(), loop
        return self._cond

    def _fits(self, nbytes: int, parsing: bool) -> bool:
        return self.in_use + nbytes <= self.total and (not parsing or self.parsing + nbytes <= self.parse_limit)

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int, *, parsing: bool = False) -> AsyncIterator[None]:
        limit = self.parse_limit if parsing else self.total
        if nbytes > limit:
            raise ValueError(f"{nbytes} bytes can never fit a budget of {limit}")
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self._fits(nbytes, parsing))
            self.in_use += nbytes
            self.parsing += nbytes if parsing else 0
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            async with cond:
                self.in_use -= nbytes
                self.parsing -= nbytes if parsing else 0
                cond.notify_all()

    def _wake(self) -> None:
        """Let waiters re-check after bytes were given back without the condition's lock."""
        cond = self._cond
        if cond is None:
            return

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be waiting
            asyncio.get_running_loop().create_task(notify())


class GrowingHold:
    """Bytes of a :class:`MemoryBudget` held for one body being parsed, grown as its bytes
    arrive (:meth:`grow_to` waits for room, first come first served), all given back by
    :meth:`release` (synchronous, so a cancelled request cannot skip it)."""

    def __init__(self, budget: MemoryBudget, *, parsing: bool = True) -> None:
        self.budget, self.parsing, self.held = budget, parsing, 0

    async def grow_to(self, nbytes: int) -> None:
        extra = nbytes - self.held
        if extra <= 0:
            return
        b = self.budget
        limit = b.parse_limit if self.parsing else b.total
        if nbytes > limit:
            raise ValueError(f"{nbytes} bytes can never fit a budget of {limit}")
        cond = b._condition()
        async with cond:
            await cond.wait_for(lambda: b._fits(extra, self.parsing))
            b.in_use += extra
            b.parsing += extra if self.parsing else 0
            b.peak = max(b.peak, b.in_use)
            self.held += extra

    def release(self) -> None:
        if not self.held:
            return
        b = self.budget
        b.in_use -= self.held
        b.parsing -= self.held if self.parsing else 0
        self.held = 0
        b._wake()


_libc_lock = threading.Lock()
_libc: ctypes.CDLL | None | bool = False


def _glibc() -> ctypes.CDLL | None:
    global _libc
    with _libc_lock:
        if _libc is False:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _libc = lib if hasattr(lib, "malloc_trim") else None
            except OSError:
                _libc = None
        return _libc  # type: ignore[return-value]


def fix_mmap_threshold(nbytes: int = 4 * 1024 * 1024) -> bool:
    """Serve allocations above ``nbytes`` from mmap, returned to the OS when freed.

    glibc raises its mmap threshold after each large free (up to 32 MB), so Pillow's
    16 MB image blocks move into the heap arenas of the decoding threads and stay there:
    7.5 GB remained held after a burst. A fixed threshold turns that off. glibc only.
    """
    lib = _glibc()
    if lib is None:
        return False
    m_mmap_threshold = -3
    return bool(lib.mallopt(m_mmap_threshold, nbytes))


def release_memory() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); False elsewhere."""
    lib = _glibc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True
