"""Grad-CAM and ONNX throughput: prints images/s for one backbone (random weights, no download).

    python benchmarks/explain_onnx.py --arch resnet50 --images 16 --batch 8

Grad-CAM: one forward + backward per image (``iipa explain``'s path, original-size mapping
included, on a 1080x1080 photo). Scoring: model calls on preprocessed uint8 batches,
PyTorch fp32 vs onnxruntime (CPU), so only the runtimes differ.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from iipa.backbones.popularity_net import PopularityNet
from iipa.backends.onnxrt import open_session
from iipa.explain import explain
from iipa.model.export import export_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PopularityNet(args.arch).eval()
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1080, 1080, 3), dtype=np.uint8))

    explain(model, photo)  # warm-up
    t = time.perf_counter()
    for _ in range(args.images):
        explain(model, photo)
    cam_rate = args.images / (time.perf_counter() - t)

    size = model.profile.input_size
    batch = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
    n_batches = max(1, args.images // args.batch)
    with torch.inference_mode():
        model(model.profile.normalize(batch))
        t = time.perf_counter()
        for _ in range(n_batches):
            model(model.profile.normalize(batch))
        torch_rate = n_batches * args.batch / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as d:
        session = open_session(export_onnx(model, f"{d}/m.onnx"), threads=args.threads)
        x = {"image": batch.numpy()}
        session.run(None, x)
        t = time.perf_counter()
        for _ in range(n_batches):
            session.run(None, x)
        onnx_rate = n_batches * args.batch / (time.perf_counter() - t)
    print(f"{args.arch}, {args.threads} threads, batch {args.batch}")
    print(f"  Grad-CAM (explain, 1080x1080 photo): {cam_rate:6.1f} img/s")
    print(f"  scoring, PyTorch fp32:               {torch_rate:6.1f} img/s")
    print(f"  scoring, onnxruntime CPU:            {onnx_rate:6.1f} img/s")


if __name__ == "__main__":
    main()
