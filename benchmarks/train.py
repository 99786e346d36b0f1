"""Training throughput: end to end (JPEG decode + crop in DataLoader workers + model) vs model only.

For each backbone, at the paper's 224 input on the CPU (bf16 autocast + channels_last
where supported), it reports

  model-only pairs/s   the same training step on one pre-decoded batch, repeated
  end-to-end pairs/s   the real loader: JPEG files -> open_image -> random crop -> step
                       (workers keep decoding while the model-only rounds run, as they
                       would while the model computes, so the end-to-end rounds measure
                       whether decoding keeps up)
  ratio                end-to-end / model-only (target >= 0.90: the data pipeline is not
                       the bottleneck)

    python benchmarks/train.py                          # efficientnet_lite0 and resnet50
    python benchmarks/train.py --steps 4 --batch-size 8 --image-size 720
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from iipa.pairs.table import write_pairs
from iipa.train import TrainConfig, Trainer
from iipa.train.data import epoch_indices, pair_loader


def make_jpegs(folder: Path, n: int, size: int) -> Path:
    """``n`` photo-like JPEGs (smooth colour fields + noise), ``size`` x ``size * 4/5``, and a pairs table."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = int(size * 0.8), size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = np.stack([np.sin(xx / (30 + 7 * c + i)) + np.cos(yy / (40 + 5 * c)) for c in range(3)], -1)
        arr = np.clip(127 + 60 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:04d}.jpg", quality=90)
    rows = [{"high_id": f"img{2 * i:04d}", "low_id": f"img{2 * i + 1:04d}", "split": "train"} for i in range(n // 2)]
    return write_pairs(pd.DataFrame(rows), folder.parent / "pairs.parquet")


def bench(backbone: str, pairs: Path, images: Path, args: argparse.Namespace) -> dict[str, float]:
    config = TrainConfig(recipe="paper", pairs=str(pairs), images=str(images), out=str(pairs.parent / f"run_{backbone}"),
                         backbone=backbone, pretrained="none", batch_size=args.batch_size, workers=args.workers,
                         precision=args.precision, progress=False)
    trainer = Trainer(config)
    model = trainer.model.train()
    n = len(trainer.train_set)
    indices = (epoch_indices(n, epoch=0, seed=0, rank=0, world=1) * 100)[: (args.steps + 1) * args.batch_size]

    # The two modes alternate in rounds and the best round of each counts, so that load
    # from other processes on a shared machine hits both alike.
    loader = pair_loader(trainer.train_set, indices, batch_size=args.batch_size, workers=trainer.workers)
    a, b, y, _ = next(iter(pair_loader(trainer.train_set, indices, batch_size=args.batch_size, workers=0)))
    for _ in range(args.warmup):
        trainer.train_step(model, a, b, y)
    model_rates, e2e_rates = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for _ in range(args.steps):  # model only: the same decoded batch again
            trainer.train_step(model, a, b, y)
        model_rates.append(args.steps * args.batch_size / (time.perf_counter() - t))
        batches = iter(loader)  # a fresh pipeline: nothing decoded during the model-only round
        next(batches)  # its first batch fills the pipeline (untimed); the rest are decoded meanwhile
        t = time.perf_counter()
        for _ in range(args.steps):  # end to end: files -> workers -> step
            a2, b2, y2, _ = next(batches)
            trainer.train_step(model, a2, b2, y2)
        e2e_rates.append(args.steps * args.batch_size / (time.perf_counter() - t))
    model_only, end_to_end = max(model_rates), max(e2e_rates)
    return {"model_only": model_only, "end_to_end": end_to_end, "workers": trainer.workers,
            "precision": str(trainer.amp_dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="efficientnet_lite0,resnet50")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step (default 16)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    parser.add_argument("--image-size", type=int, default=1080, help="JPEG width (Instagram: 1080)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: iipa's)")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} pairs, "
          f"{args.image_size}px JPEGs")
    with tempfile.TemporaryDirectory() as tmp:
        n_images = 2 * args.batch_size * 4
        pairs = make_jpegs(Path(tmp) / "images", n_images, args.image_size)
        print(f"{'backbone':20} {'model-only':>12} {'end-to-end':>12} {'ratio':>7}  workers precision")
        for backbone in args.backbones.split(","):
            r = bench(backbone, pairs, Path(tmp) / "images", args)
            print(f"{backbone:20} {r['model_only']:10.2f}/s {r['end_to_end']:10.2f}/s "
                  f"{r['end_to_end'] / r['model_only']:7.2f}  {r['workers']:>7} {r['precision']}", flush=True)


if __name__ == "__main__":
    main()
