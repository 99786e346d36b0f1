"""`iipa score`, `rank` and `compare` with the default model on the CPU (or an .onnx file) run
through onnxruntime without importing torch (which cost ~2.7 s of a fresh process's start-up).
The scores are the torch route's, failures are still reported per file, and whatever needs
PyTorch (bf16, `--runtime torch`) still gets it.

Each command runs in a fresh interpreter that reports, after ``iipa.cli.main`` returned, which
torch modules were ever imported (an imported module stays in ``sys.modules``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _formats import save_format_variants
from iipa.backends import device as runtime
from iipa.model.record import resolve_model
from iipa.model.weights import DEFAULT_MODEL, get_weights
from iipa.scoring import make_scorer

# The shipped export against its .pt on real photos: 4e-7 measured (fp32 rounding in the two
# runtimes' convolutions). A retrained model whose export differs more fails here first.
TOL = 1e-5  # the calibrated model's scores are ~2.4x larger, and so are rounding differences
RUNNER = """
import json, sys
import iipa.backends.device
if sys.argv[1] == "no-gpu":  # answer --device auto as a machine without GPU device nodes would
    iipa.backends.device.cuda_may_be_present = lambda: False
from iipa.cli import main
code = main(sys.argv[2:])
sys.stdout.flush()
torch = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps({"code": code, "torch": torch}), file=sys.stderr)
"""


def run_iipa(*argv: object, gpu: str = "as-is") -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr without the report line, torch modules imported)."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, gpu, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    *err, last = proc.stderr.splitlines() or [""]
    assert last.startswith("{"), f"the command did not return normally (exit {proc.returncode}): {proc.stderr}"
    report = json.loads(last)
    assert proc.returncode == 0, proc.stderr
    return report["code"], proc.stdout, "\n".join(err), report["torch"]


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos) -> Path:
    """Real photos as JPEG, PNG, EXIF-rotated JPEG and CMYK JPEG."""
    d = tmp_path_factory.mktemp("torch-free")
    save_format_variants(d, photos)
    return d


def _scores(jsonl: str) -> dict[str, float]:
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert all(r["error"] is None for r in rows), rows
    return {r["path"]: r["score"] for r in rows}


@pytest.mark.parametrize("crops", [1, 5])
def test_cli_scores_without_torch_like_the_torch_route(images, crops):
    code, out, err, torch = run_iipa("score", images, "--device", "cpu", "--format", "jsonl", "--crops", crops)
    assert code == 0, err
    assert torch == [], f"iipa score on the ONNX route imported {torch[:3]}"
    got = _scores(out)
    paths = sorted(got)
    expected = make_scorer(DEFAULT_MODEL, runtime="torch", device="cpu", crops=crops, num_workers=0).score(paths)
    delta = np.abs(np.array([got[p] for p in paths]) - np.array(expected))
    assert len(paths) == 4 and delta.max() <= TOL, dict(zip(paths, delta, strict=True))


@pytest.mark.parametrize("argv", [
    ["rank", "{images}", "--device", "cpu", "--report", "{tmp}/album.html"],
    ["compare", "{images}/plain.jpg", "{images}/cmyk.jpg", "--device", "cpu"],
    ["score", "{images}", "--runtime", "onnx"],
    ["score", "{images}", "--model", "{onnx}", "--device", "cpu"],
    ["model-info"],
    ["evaluate", "--pairs", "{tmp}/pairs.csv", "--images", "{images}", "--device", "cpu"],
], ids=["rank-report", "compare", "runtime-onnx", "onnx-file", "model-info", "evaluate"])
def test_other_onnx_routes_import_no_torch(images, tmp_path, argv):
    (tmp_path / "pairs.csv").write_text("high_id,low_id,split\nrotated,cmyk,test\ncmyk,rotated,test\n")
    argv = [a.format(images=images, tmp=tmp_path, onnx=resolve_model().onnx_file) for a in argv]
    code, out, err, torch = run_iipa(*argv, gpu="no-gpu")
    assert code == 0, err
    assert torch == [], f"iipa {argv[0]} on the ONNX route imported {torch[:3]}"
    assert out.strip()


def test_device_auto_without_a_gpu_imports_no_torch(images):
    code, out, err, torch = run_iipa("score", images, "--format", "jsonl", gpu="no-gpu")
    assert code == 0 and torch == [], (err, torch[:3])
    assert len(_scores(out)) == 4


def test_bad_files_are_reported_per_item_without_torch(images, tmp_path):
    (tmp_path / "good.jpg").write_bytes((images / "plain.jpg").read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    code, out, err, torch = run_iipa("score", tmp_path, "--device", "cpu", "--format", "jsonl")
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and torch == [], (err, torch[:3])
    assert rows["good.jpg"]["error"] is None and rows["good.jpg"]["score"] is not None
    assert rows["broken.jpg"]["score"] is None and rows["broken.jpg"]["error"]
    assert "broken.jpg" in err and "1 of 2 inputs could not be scored" in err


def test_usage_errors_exit_2_without_torch(images, tmp_path):
    code, _, err, torch = run_iipa("score", images, "--model", tmp_path / "missing.onnx")
    assert code == 2 and "no such file" in err and torch == [], (err, torch[:3])


@pytest.mark.parametrize("flags", [["--runtime", "torch"], ["--precision", "bf16"]], ids=" ".join)
def test_what_needs_pytorch_still_gets_it(images, flags):
    code, out, err, torch = run_iipa("score", images / "plain.jpg", "--device", "cpu", "--format", "jsonl", *flags)
    assert code == 0, err
    assert "torch" in torch, f"iipa score {' '.join(flags)} should score with PyTorch"
    assert len(_scores(out)) == 1


def test_cuda_presence_is_ruled_out_only_without_gpu_device_nodes(monkeypatch):
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: [])
    assert not runtime.cuda_may_be_present() and runtime.runs_on_cpu("auto")
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: ["/dev/nvidia0"] if "nvidia[" in pattern else [])
    assert runtime.cuda_may_be_present()
    assert runtime.runs_on_cpu("cpu") and not runtime.runs_on_cpu("cuda:1")
    assert get_weights(DEFAULT_MODEL).onnx_file  # the route these tests exercise exists
