"""Memory the service may use for decoded images: a global budget of decoded pixels that
every image must acquire before it is decoded, and giving freed memory back to the OS.

Why pixels: a 5 MB request of 32 flat 7000x7000 PNGs decodes to 32 x 49 MP; bytes on the
wire say nothing about memory. The budget is counted in the pixels an image will have
*when decoded* (after the JPEG draft scale the profile asks for), read from its header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import AsyncIterator

# Pillow keeps RGB in 4 bytes a pixel; converting RGBA/P/16-bit images to RGB holds up to
# four such copies at once. Used to state the budget in bytes, not to enforce it.
BYTES_PER_PIXEL_PEAK = 16


class PixelBudget:
    """An async ledger of decoded pixels: ``async with budget.hold(n)`` waits until ``n``
    pixels are free (first come, first served), and gives them back on exit, even when the
    waiting or holding task is cancelled (a request timing out)."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"pixel budget must be at least 1, got {total}")
        self.total = total
        self.in_use = 0
        self.peak = 0
        self._cond: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._cond is None or self._loop is not loop:  # test clients run a loop per session
            self._cond, self._loop = asyncio.Condition(), loop
        return self._cond

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        if pixels > self.total:
            raise ValueError(f"{pixels} pixels can never fit a budget of {self.total}")
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_use + pixels <= self.total)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            async with cond:
                self.in_use -= pixels
                cond.notify_all()


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
