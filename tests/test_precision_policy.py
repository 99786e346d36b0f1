"""Precision ``auto`` by capability, on CPUs this machine is not: the CPU flags are mocked.

Training's ``auto`` is bf16 autocast only where the CPU computes bf16 natively (AVX512-BF16
or AMX); elsewhere (AVX2 only, AVX-512 with VNNI but no bf16) bf16 is emulated and several
times slower than fp32, so ``auto`` is fp32. Scoring's ``auto`` is fp32 on every CPU: bf16
rounding moves EfficientNet-Lite0 scores whatever the chip (see iipa.backends.device's docstring).
"""

from __future__ import annotations

import platform

import pytest
import torch

import iipa
import iipa.backends.device as runtime
from iipa.backends.device import resolve_precision, resolve_scoring_precision
from iipa.train.config import RECIPES

BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt aes avx f16c fma avx2 bmi1 bmi2"
# (name, /proc/cpuinfo flags, training's auto on the CPU)
CPUS = [
    ("avx2-only (AMD EPYC Zen 2, most laptops)", BASE, None),
    ("avx512-vnni without bf16 (Intel Cascade Lake)", f"{BASE} avx512f avx512bw avx512vl avx512_vnni", None),
    ("avx512_bf16 (AMD Zen 4, Intel Cooper Lake)", f"{BASE} avx512f avx512bw avx512_vnni avx512_bf16",
     torch.bfloat16),
    ("amx (Intel Sapphire Rapids)", f"{BASE} avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8",
     torch.bfloat16),
    ("amx_bf16 alone counts", f"{BASE} amx_bf16 amx_tile", torch.bfloat16),
]
CPU = torch.device("cpu")


@pytest.fixture(params=CPUS, ids=[c[0].split(" ")[0] for c in CPUS])
def mocked_cpu(request, monkeypatch):
    _, flags, training_auto = request.param
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags.split()))
    return training_auto


def test_training_auto_is_bf16_only_with_native_bf16(mocked_cpu):
    assert resolve_precision("auto", CPU) == mocked_cpu
    assert runtime.cpu_supports_bf16() == (mocked_cpu is not None)
    # explicit choices do not depend on the CPU
    assert resolve_precision("fp32", CPU) is None and resolve_precision("bf16", CPU) == torch.bfloat16


def test_the_paper_recipe_leaves_the_choice_to_auto():
    """The rule above is what decides the paper recipe's precision; the default recipe is fp32."""
    assert RECIPES["paper"].defaults["precision"] == "auto"
    assert RECIPES["default"].defaults["precision"] == "fp32"


def test_scoring_auto_is_fp32_on_every_cpu(mocked_cpu, tiny_checkpoint):
    assert resolve_scoring_precision("auto", CPU) is None
    assert resolve_scoring_precision("bf16", CPU) == torch.bfloat16  # an explicit choice still holds
    scorer = iipa.make_scorer(tiny_checkpoint, runtime="torch", device="cpu", num_workers=0)
    assert scorer.precision == "fp32"


def test_cpu_flags_reads_this_machines_flags():
    """The unmocked reader parses /proc/cpuinfo (every x86-64 CPU has SSE2)."""
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in runtime.cpu_flags()
    else:
        assert isinstance(runtime.cpu_flags(), frozenset)
