"""Where and how a model runs: device, precision and decoding threads.

One home for the policy that scoring, training and serving share, so a change of default
(say, a CPU where bf16 moves scores too much) happens once.

Precision. A default precision for *scoring* must keep the 0-100 scaled score within
+-1 point of fp32 for >= 99 % of images. Measured on 306 real photos (8 skimage photos,
298 Instagram photos; ``benchmarks/score.py`` prints the distribution), on a CPU with
AVX512-BF16 and AMX: ResNet-50 in the authors' format passes (bf16 100 % within 1 point,
max 0.98) but EfficientNet-Lite0 does not (56 % within 1 point, p99 5.1, max 8.1): its
depthwise convolutions lose too much in bf16. So scoring's ``auto`` is fp32 on every
device (bf16 rounding does not depend on the chip); ``bf16`` is an explicit choice that
moves scores. Training's ``auto`` stays bf16 autocast where the hardware has it (mixed
precision is how models are trained; the trainer scores its validation pairs with the
scoring precision). The score head always runs in fp32 (``ScoreHead``).

torch is imported by the functions that need it, not by this module: the onnxruntime
scoring path (:func:`iipa.backends.choose.choose_runtime`) must decide its device without it.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
from typing import TYPE_CHECKING, Any

from iipa.constants import PRECISIONS
from iipa.errors import IIPAError

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            line = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.split(":", 1)[-1].split())


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 (AVX512-BF16 or AMX), where autocast is 2-3x faster."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(device: str | None) -> torch.device:
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# Device nodes a CUDA (or ROCm) GPU needs on Linux: NVIDIA's, WSL2's GPU bridge, AMD's KFD.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")


def cuda_may_be_present() -> bool:
    """False only where ``torch.cuda.is_available()`` cannot be True: no GPU device node on
    Linux, or macOS. Lets ``--device auto`` mean the CPU without importing torch; where a GPU
    may exist (or the platform has no such nodes to look at) torch itself decides."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(glob.glob(pattern) for pattern in _GPU_NODES)


def runs_on_cpu(device: Any) -> bool:
    """Whether ``device`` (a name, None/``auto``, or a ``torch.device``) resolves to the CPU;
    imports torch only for ``auto`` where a GPU may be present."""
    if device in (None, "auto"):
        return not cuda_may_be_present() or resolve_device(device).type == "cpu"
    return device_type(device) == "cpu"


def device_type(device: Any) -> str:
    """``cpu``/``cuda``/``mps`` of a ``torch.device`` or a name such as ``cuda:1``."""
    return str(getattr(device, "type", None) or device).split(":")[0]


def resolve_scoring_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for scoring (None: plain fp32); ``auto`` is fp32 (see above)."""
    return resolve_precision("fp32" if precision == "auto" else precision, device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training at ``precision`` (None: plain fp32); ``auto`` is
    bf16 (fp16 on GPUs without bf16) where the hardware runs it natively."""
    import torch

    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    if precision in ("bf16", "fp16"):
        if precision == "fp16" and device.type == "cpu":
            raise IIPAError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
        return torch.bfloat16 if precision == "bf16" else torch.float16
    raise IIPAError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")


def precision_name(dtype: torch.dtype | None) -> str:
    if dtype is None:
        return "fp32"
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# Freed blocks up to this size stay in the process for the next batch (glibc's default hands
# any block over 32 MiB back to the kernel at once, and every batch faults it in again).
KEEP_FREED_BYTES = 1 << 30


def prepare_long_cpu_work() -> None:
    """Process-wide settings for long PyTorch work, made by the commands that train before
    torch loads (the library leaves a caller's process alone). Each keeps a value the user set.

    - ``OMP_WAIT_POLICY=PASSIVE``: an OpenMP thread that finished its share sleeps instead of
      spinning; on a busy machine (more runnable threads than cores) the spinning showed as
      half of the feature extraction's user time.
    - glibc's malloc keeps freed blocks below :data:`KEEP_FREED_BYTES`: activations of a batch
      of 64 (50-100 MB per layer) were mmapped and unmapped for every layer of every batch,
      about 10,000 page faults per image, a third of a training's CPU time spent in the kernel.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4
    if not mallopt(m_mmap_threshold, KEEP_FREED_BYTES):  # a glibc that caps the threshold: no mmap at all
        mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, KEEP_FREED_BYTES)


def decode_threads(device: torch.device | str) -> int:
    """Decoding threads for scoring.

    On the CPU the scorer alternates: it decodes a batch on every core, then runs the model
    on every core. Overlapping the two would make the model's OpenMP threads wait for the
    one that shares its core with a decoder (an OpenMP region is as slow as its slowest
    thread: on 2 cores a decoding process cut throughput to 66-74 %, ``benchmarks/train.py``),
    and both phases scale over cores, so alternating loses only the hand-over. On a GPU the
    CPUs are free for decoding while the model runs: one thread per CPU, up to 16.
    """
    return cpu_count() if device_type(device) == "cpu" else max(1, min(16, cpu_count()))
