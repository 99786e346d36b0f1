"""Scoring speed and agreement, in one run: bare model vs `iipa score` end to end, for PyTorch
fp32/bf16 and onnxruntime fp32/int8, plus bf16's effect on scaled scores of real photos.

    python benchmarks/score.py            # ResNet-50 (authors' format), 128 JPEGs, 2 rounds
    python benchmarks/score.py --quick    # 48 JPEGs, 1 round, fewer real photos
    python benchmarks/score.py --arch efficientnet_lite0

Images: scikit-image photographs, randomly cropped, flipped and colour-jittered, upscaled to
1080x1080 and saved as quality-90 JPEGs (``_photos.py``). Models have random weights (speed
does not depend on them; agreement figures are for these weights). Rounds interleave the
runtimes, so a machine loaded by others slows them alike: compare the ratios, which are
measured within a round, and quote the machine's state with them.

Bare model: the backend alone (``Scorer.score_array``: PyTorch or onnxruntime) on prepared uint8 views.
End to end: ``Scorer.iter_scores`` over the JPEG files, which is what ``iipa score`` runs
(decoding threads + the model). Agreement: against PyTorch fp32 end-to-end scores of the
same files; scaled = 100 * Phi((s - mean) / std) with the fp32 scores' mean and std.

Precision check: the 0-100 scaled score under bf16 against fp32 on real photos (skimage's
and up to --photos-n of --photos), for ResNet-50 (authors) and EfficientNet-Lite0 (ImageNet
backbone): the default precision must keep >= 99 % of images within 1 point.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _photos import jpeg_photos
from _timing import bare_rate, decode_rate, end_to_end
from scipy.stats import norm, spearmanr

from iipa import PopularityNet, Scorer, make_scorer, save_checkpoint
from iipa.backends.device import cpu_count, cpu_flags
from iipa.images import iter_image_files

REPO = Path(__file__).resolve().parents[1]
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def make_jpegs(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    paths = []
    for i, data in enumerate(jpeg_photos(n, size, seed)):
        path = folder / f"img{i:05d}.jpg"
        path.write_bytes(data)
        paths.append(path)
    return paths


def scaled_delta(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    mean, std = ref.mean(), ref.std(ddof=1)
    return np.abs(norm.cdf((ref - mean) / std) - norm.cdf((other - mean) / std)) * 100.0


def agreement(ref: np.ndarray, other: np.ndarray) -> str:
    return (f"Spearman {spearmanr(ref, other).statistic:.4f}  max|d| {np.abs(ref - other).max():.4f}  "
            f"max|d scaled| {scaled_delta(ref, other).max():.2f}")


def make_scorers(ckpt: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Scorer]:
    from iipa.model.export import export_onnx
    from iipa.model.quantize import export_int8
    from iipa.model.record import load_model

    model = load_model(ckpt)
    t = time.perf_counter()
    export_onnx(model, tmp / "model.onnx")
    record = export_int8(model, tmp / "model.int8.onnx")
    a = record["agreement_with_fp32"]
    print(f"exported fp32 + int8 ONNX in {time.perf_counter() - t:.0f} s; int8 export's own check on "
          f"{a['n']} held-apart photos: Spearman {a['spearman']:.4f}, max|d scaled| {a['max_abs_delta_scaled']:.2f}")
    kw = dict(batch_size=args.batch_size, num_workers=args.workers)
    return {"torch fp32": make_scorer(ckpt, precision="fp32", **kw), "torch bf16": make_scorer(ckpt, precision="bf16", **kw),
            "onnx fp32": make_scorer(tmp / "model.onnx", **kw), "onnx int8": make_scorer(tmp / "model.int8.onnx", **kw)}


def speed(paths: list[Path], scorers: dict[str, Scorer], args: argparse.Namespace) -> None:
    size = next(iter(scorers.values())).profile.input_size
    batch = np.random.default_rng(0).integers(0, 256, (args.batch_size, size, size, 3), dtype=np.uint8)
    bare: dict[str, list[float]] = {k: [] for k in scorers}
    e2e: dict[str, list[float]] = {k: [] for k in scorers}
    ratio: dict[str, list[float]] = {k: [] for k in scorers}
    vs_bf16: dict[str, list[float]] = {k: [] for k in scorers}
    scores: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, scorer in scorers.items():  # interleaved: every runtime once per round
            bare[name].append(bare_rate(scorer, batch, args.seconds))
            rate, scores[name] = end_to_end(scorer, paths)
            e2e[name].append(rate)
            ratio[name].append(rate / bare[name][-1])
        for name in scorers:
            vs_bf16[name].append(e2e[name][-1] / bare["torch bf16"][-1])
        print(f"round {r + 1}: " + "  ".join(f"{k} {bare[k][-1]:.1f}/{e2e[k][-1]:.1f}" for k in scorers)
              + "  (bare/end-to-end img/s)")
    med = statistics.median
    print(f"\n{'runtime':12s} {'bare img/s':>10s} {'e2e img/s':>10s} {'e2e/bare':>9s} {'e2e/bare bf16':>14s}  agreement with torch fp32 (e2e)")
    for name in scorers:
        agree = "(reference)" if name == "torch fp32" else agreement(scores["torch fp32"], scores[name])
        print(f"{name:12s} {med(bare[name]):10.1f} {med(e2e[name]):10.1f} {med(ratio[name]):9.2f} "
              f"{med(vs_bf16[name]):14.2f}  {agree}")
    scorer = scorers["onnx int8"]
    print(f"decoding alone ({scorer.profile.name} profile, {scorer.profile.decode}): "
          f"{decode_rate(scorer, paths, 1):.0f} img/s on 1 thread, "
          f"{decode_rate(scorer, paths, cpu_count()):.0f} on {cpu_count()}")


def real_photos(args: argparse.Namespace) -> list:
    import skimage.data

    items: list = [getattr(skimage.data, name)() for name in SKIMAGE]
    folder = Path(args.photos)
    if folder.is_dir():
        items += [str(p) for p in list(iter_image_files(folder))[: args.photos_n]]
    return items


def distribution(name: str, fp32: np.ndarray, other: np.ndarray) -> None:
    ok = ~(np.isnan(fp32) | np.isnan(other))
    d = scaled_delta(fp32[ok], other[ok])
    p50, p90, p99 = np.percentile(d, [50, 90, 99])
    print(f"  {name:24s} n={ok.sum()}  |d scaled| p50 {p50:.2f}  p90 {p90:.2f}  p99 {p99:.2f}  max {d.max():.2f}  "
          f"within 1 point {100 * (d <= 1).mean():5.1f} %  within 3 {100 * (d <= 3).mean():5.1f} %  "
          f"Spearman {spearmanr(fp32[ok], other[ok]).statistic:.4f}  max|d| {np.abs(fp32[ok] - other[ok]).max():.4f}")


def precision_check(args: argparse.Namespace) -> None:
    """bf16 and int8 (shipped calibration photos) against fp32 on real photos."""
    from iipa.model.quantize import export_int8

    items = real_photos(args)
    print(f"\nagainst fp32 on {len(items)} real photos (skimage + {args.photos}); scaled against the fp32 scores; "
          "a default precision needs >= 99 % within 1 point")
    for arch, profile, pretrained in (("resnet50", "authors", False), ("efficientnet_lite0", None, True)):
        torch.manual_seed(0)
        model = PopularityNet(arch, profile=profile, pretrained=pretrained)
        fp32 = np.array(make_scorer(model, precision="fp32", batch_size=args.batch_size).score(items, on_error="nan"))
        bf16 = np.array(make_scorer(model, precision="bf16", batch_size=args.batch_size).score(items, on_error="nan"))
        distribution(f"{arch} bf16", fp32, bf16)
        with tempfile.TemporaryDirectory() as tmp:
            export_int8(model, Path(tmp) / "m.onnx")
            int8 = np.array(make_scorer(Path(tmp) / "m.onnx", batch_size=args.batch_size).score(items, on_error="nan"))
        distribution(f"{arch} int8", fp32, int8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--n", type=int, default=128, help="1080-px JPEGs to score end to end")
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per bare-model measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="decoding threads (default: the Scorer's)")
    ap.add_argument("--photos", default=str(REPO.parent / "shared" / "data" / "instagram-dev" / "images"))
    ap.add_argument("--photos-n", type=int, default=300)
    ap.add_argument("--skip-precision", action="store_true")
    ap.add_argument("--quick", action="store_true", help="48 JPEGs, 1 round, 2 s per bare run, 60 real photos")
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds, args.seconds, args.photos_n = 48, 1, 2.0, 60

    flags = cpu_flags()
    isa = [f for f in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_count()} CPUs ({', '.join(isa) or 'no VNNI/bf16'}), "
          f"load average {load:.1f} at start, arch {args.arch}, batch {args.batch_size}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_jpegs(tmp, args.n, args.size)
        print(f"generated {args.n} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t:.1f} s")
        profile = "authors" if args.arch == "resnet50" else None
        ckpt = save_checkpoint(PopularityNet(args.arch, profile=profile), tmp / "model.pt")
        speed(paths, make_scorers(ckpt, tmp, args), args)
    if not args.skip_precision:
        precision_check(args)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
