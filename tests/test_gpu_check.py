"""benchmarks/gpu_check.py's CPU dry run: every step of the GPU check runs and learns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    code = gpu_check.main(["--device", "cpu", "--tiny", "--work", str(tmp_path), "--json", str(tmp_path / "s.json"),
                           "--jobs", "2"])
    rows = json.loads((tmp_path / "s.json").read_text())
    assert code == 0, rows
    steps = [r["step"] for r in rows]
    assert any("paper recipe, AMP bf16" in s for s in steps) and any("default recipe" in s for s in steps)
    assert any("two ranks over gloo" in s for s in steps) and steps[-1] == "iipa score --device cpu"
    ddp2 = next(r for r in rows if "two ranks" in r["step"])
    assert ddp2["world_size"] == 2 and ddp2["replicas_identical"]
    assert "step" in capsys.readouterr().out  # the printed summary table
