"""Scoring throughput and memory: end-to-end vs model-only, bf16 vs fp32, peak RSS.

    python benchmarks/score.py                      # ResNet-50, 256 images of 1080x1080
    python benchmarks/score.py --arch efficientnet_lite0 --n 128
    python benchmarks/score.py --n 0 --memory-run 100000  # RSS alone, 100k inputs

Images are photographs from scikit-image, randomly cropped, flipped and colour-jittered,
upscaled to 1080x1080 and saved as quality-90 JPEGs (Instagram's size). The model is a
random-init checkpoint in the authors' format (the released weights are not reachable
here); speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from _photos import jpeg_photos
from scipy.stats import spearmanr

from iipa import PopularityNet, Scorer, save_checkpoint


def make_jpegs(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    paths = []
    for i, data in enumerate(jpeg_photos(n, size, seed)):
        path = folder / f"img{i:05d}.jpg"
        path.write_bytes(data)
        paths.append(path)
    return paths


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest child) peak resident set size in MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def model_only(scorer: Scorer, batch: int, iters: int) -> float:
    x = torch.randint(0, 256, (batch, 3, scorer.profile.input_size, scorer.profile.input_size), dtype=torch.uint8)
    scorer.score_batch(x)  # warm-up (oneDNN kernel selection)
    t = time.perf_counter()
    for _ in range(iters):
        scorer.score_batch(x)
    return batch * iters / (time.perf_counter() - t)


def end_to_end(scorer: Scorer, paths: list[Path]) -> tuple[float, list[float]]:
    list(scorer.iter_scores(paths[: scorer.batch_size]))  # warm-up, workers start
    t = time.perf_counter()
    scores = [r.score for r in scorer.iter_scores(paths)]
    return len(paths) / (time.perf_counter() - t), scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--optimize", default="none", choices=["none", "jit", "compile"])
    ap.add_argument("--memory-run", type=int, default=0, help="also score this many inputs (tiny model) for RSS")
    args = ap.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.n:
            t = time.perf_counter()
            paths = make_jpegs(tmp, args.n, args.size)
            print(f"generated {args.n} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t:.1f} s")
            profile = "authors" if args.arch == "resnet50" else None
            ckpt = save_checkpoint(PopularityNet(args.arch, profile=profile), tmp / "model.pt")
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, arch {args.arch}, "
                  f"batch {args.batch_size}, optimize {args.optimize}")

            results = {}
            for precision in ("bf16", "fp32"):
                scorer = Scorer(ckpt, precision=precision, batch_size=args.batch_size, num_workers=args.workers,
                                optimize=args.optimize)
                mo = model_only(scorer, args.batch_size, max(2, args.n // args.batch_size // 2))
                e2e, scores = end_to_end(scorer, paths)
                results[precision] = scores
                print(f"[{precision}] end-to-end {e2e:6.1f} img/s | model-only {mo:6.1f} img/s | "
                      f"ratio {e2e / mo:5.1%} | workers {scorer.num_workers}")
            rho = spearmanr(results["bf16"], results["fp32"]).statistic
            print(f"bf16 vs fp32 Spearman rank correlation: {rho:.5f} on {args.n} images")
            main_rss, child_rss = peak_rss_mb()
            print(f"peak RSS: main process {main_rss:.0f} MB, largest worker {child_rss:.0f} MB")

        if args.memory_run:
            (tmp / "small").mkdir()
            small = make_jpegs(tmp / "small", 200, 320, seed=1)
            inputs = [small[i % len(small)] for i in range(args.memory_run)]
            tiny = save_checkpoint(PopularityNet("tiny"), tmp / "tiny.pt")
            scorer = Scorer(tiny, batch_size=args.batch_size, num_workers=args.workers)
            before = peak_rss_mb()[0]
            t = time.perf_counter()
            n = sum(1 for r in scorer.iter_scores(inputs) if r.ok)
            dt = time.perf_counter() - t
            main_rss, child_rss = peak_rss_mb()
            print(f"memory run: {n} inputs scored in {dt:.0f} s ({n / dt:.0f} img/s, tiny model); "
                  f"peak RSS main {main_rss:.0f} MB (was {before:.0f} MB before), largest worker {child_rss:.0f} MB")


if __name__ == "__main__":
    main()
