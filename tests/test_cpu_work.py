"""The settings `iipa train` makes for long CPU work (iipa.backends.device.prepare_long_cpu_work):
freed batch-sized blocks stay in the process, so the next batch does not fault them in again
(glibc's default gave back every block over 32 MiB: ~10,000 page faults per image in the
feature extraction, a third of a training's CPU time in the kernel)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# malloc, touch, free, as PyTorch's CPU allocator does with a batch's tensors (numpy would
# ask for huge pages, which hides the faults)
CHILD = """
import ctypes, json, os, resource, sys
if sys.argv[1] == "tuned":
    from iipa.backends.device import prepare_long_cpu_work
    prepare_long_cpu_work()
libc = ctypes.CDLL(None)
libc.prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: count 4 KiB faults whatever the host's huge-page setting
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # a batch's activation of one layer

def batch():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)

batch()  # the first one is faulted in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "pages": size // os.sysconf("SC_PAGE_SIZE"),
                  "omp": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _run(mode: str, **env: str) -> dict:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "OMP_WAIT"))}
    res = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120,
                         env={**clean, **env}, check=True)
    return json.loads(res.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings; other platforms keep theirs")
def test_freed_batches_are_reused_not_faulted_in_again():
    plain, tuned = _run("plain"), _run("tuned")
    assert plain["faults"] >= 5 * plain["pages"], plain  # the default: every block mapped afresh
    assert tuned["faults"] < plain["pages"], tuned  # tuned: the freed block is reused
    assert plain["omp"] is None and tuned["omp"] == "PASSIVE"
    assert _run("tuned", OMP_WAIT_POLICY="ACTIVE")["omp"] == "ACTIVE"  # a user's choice is kept
