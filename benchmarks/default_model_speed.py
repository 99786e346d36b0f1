"""Scoring speed of the shipped default model, in one run, interleaved:

    python benchmarks/default_model_speed.py            # 128 1080-px JPEGs, 2 rounds
    python benchmarks/default_model_speed.py --quick    # 48 JPEGs, 1 round
    python benchmarks/default_model_speed.py --cli-only --n 1024   # only the fresh-process rows

Per round, for the default weights (``DEFAULT_MODEL``) on the CPU in fp32:
  bare torch    ``make_scorer(runtime="torch").score_array`` on prepared uint8 views
  bare onnx     the shipped ONNX export's onnxruntime backend (``make_scorer().score_array``), same views
  e2e torch     ``make_scorer(runtime="torch").iter_scores`` over the JPEG files
  e2e default   ``make_scorer()`` (what ``iipa score`` builds: onnxruntime via the companion)
  iipa score    the CLI in a fresh process, startup and model loading included
and decoding alone (the profile's ``prepare`` on every core). Images: ``_photos.py``.
Then the fresh-process start-up in seconds: ``python -c 'import iipa.cli'`` and ``iipa
score`` on one image (median of 3), and whether that ``iipa score`` imported torch (the
ONNX route must not: ~2.7 s of start-up).
The machine may be shared: compare the ratios (taken within a round) and quote the load
average printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _photos import jpeg_photos
from _timing import bare_rate, decode_rate
from _timing import end_to_end as e2e_rate

from iipa import make_scorer
from iipa.backends.device import cpu_count
from iipa.model.weights import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


ENV = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
SCORE = ["-m", "iipa", "score", "--format", "csv", "--device", "cpu"]
# `iipa score` as `python -m iipa` runs it, then whether torch was imported.
TORCH_PROBE = ("import sys; from iipa.cli import main; code = main(sys.argv[1:]); "
               "print('torch imported:', 'torch' in sys.modules, file=sys.stderr); sys.exit(code)")


def fresh_seconds(*argv: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def cli_rate(folder: Path, n: int) -> float:
    return n / fresh_seconds(*SCORE, str(folder))


def startup(one_image: Path) -> None:
    """Fresh-process start-up of the CLI, and whether scoring one image imported torch."""
    imports = statistics.median(fresh_seconds("-c", "import iipa.cli") for _ in range(3))
    one = statistics.median(fresh_seconds(*SCORE, str(one_image)) for _ in range(3))
    probe = subprocess.run([sys.executable, "-c", TORCH_PROBE, *SCORE[2:], str(one_image)], env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    print(f"fresh process, s (median of 3): import iipa.cli {imports:.2f}  iipa score on 1 image {one:.2f}; "
          f"iipa score {probe.stderr.strip().splitlines()[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per bare-model measurement")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cli-only", action="store_true", help="only the fresh-process `iipa score` rows")
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds, args.seconds = 48, 1, 2.0
    print(f"{DEFAULT_MODEL}, {args.n} JPEGs 1080x1080, batch 32, {cpu_count()} CPUs, torch {torch.__version__}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(jpeg_photos(args.n, 1080)):
            paths.append(Path(tmp) / f"img{i:04d}.jpg")
            paths[-1].write_bytes(data)
        if args.cli_only:
            return cli_only(Path(tmp), paths, args.rounds)
        torch_scorer = make_scorer(runtime="torch", device="cpu")
        default = make_scorer(device="cpu")
        print(f"default Scorer runs on: {default.runtime}")
        size = default.profile.input_size
        batch = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
        rows: dict[str, list[float]] = {}
        for r in range(args.rounds):
            got = {
                "bare torch": bare_rate(torch_scorer, batch, args.seconds),
                "bare onnx": bare_rate(default, batch, args.seconds),
            }
            got["e2e torch"], ref = e2e_rate(torch_scorer, paths)
            got["e2e default"], scores = e2e_rate(default, paths)
            got["iipa score"] = cli_rate(Path(tmp), args.n)
            got["decode only"] = decode_rate(default, paths, cpu_count())
            for k, v in got.items():
                rows.setdefault(k, []).append(v)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v:.1f}" for k, v in got.items())
                  + f"  img/s; max |score default - torch| {np.abs(scores - ref).max():.1e}")
        med = {k: statistics.median(v) for k, v in rows.items()}
        startup(paths[0])
    print("\nmedian img/s: " + "  ".join(f"{k} {v:.1f}" for k, v in med.items()))
    print(f"bare onnx / bare torch       {med['bare onnx'] / med['bare torch']:.2f}")
    print(f"e2e default / bare onnx      {med['e2e default'] / med['bare onnx']:.2f}")
    print(f"e2e default / e2e torch      {med['e2e default'] / med['e2e torch']:.2f}")
    print(f"iipa score (CLI) / bare onnx {med['iipa score'] / med['bare onnx']:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def cli_only(folder: Path, paths: list[Path], rounds: int) -> None:
    rates = []
    for r in range(rounds):
        rates.append(cli_rate(folder, len(paths)))
        print(f"round {r + 1}: iipa score {rates[-1]:.1f}  img/s")
    print(f"\nmedian img/s: iipa score {statistics.median(rates):.1f}")
    startup(paths[0])
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
