"""int8 settings compared: agreement with fp32 and speed, on this CPU's kernels and, with
--emulate, on another CPU's (QEMU user mode, e.g. an AVX2-only Haswell without VNNI).

    python benchmarks/int8.py                              # tiny + ResNet-50, 48 photos
    python benchmarks/int8.py --arch tiny --emulate Haswell-v4
    python benchmarks/int8.py --arch resnet50 --emulate Haswell-v4 --emulate-n 8
    python benchmarks/int8.py --arch instagram-lite0 --photos DIR --calib-n 200 --n 300

Models have random weights (seed 0): the test suite's ``tiny`` (small profile) and the
score benchmark's ResNet-50 (authors' profile). Each candidate is calibrated on the same 30
of the 40 shipped photos that ``iipa export --quantize int8`` uses, and compared with the
fp32 ONNX file on --n photos held apart from calibration (scikit-image photographs, cropped
and colour-jittered: ``_photos.py``): Spearman, and max |Δscore| over the fp32 scores'
standard deviation (the spread that ranks and levels are made of; also its median). With
--photos, a named model or model file is calibrated on --calib-n of the folder's photos and
compared on --n others (seeded). Speed: onnxruntime alone on a random uint8 batch, img/s,
rounds interleaved so that other load slows all alike.

--emulate CPU runs the same files under ``qemu-x86_64 -cpu CPU`` (Debian: qemu-user), whose
CPUID shows that CPU's features, so onnxruntime picks that CPU's kernels; a MatMulInteger
probe (uint8 255 x int8 -128, whose exact sum no int16 pair can hold) first shows whether
that kernel path saturates. Emulation is slow: --emulate-n limits the photos scored there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

CANDIDATES = {  # name -> changes to iipa.model.quantize.SETTINGS
    "u8s8 8-bit": {"reduce_range": False},
    "u8s8 7-bit": {"reduce_range": True},
    "u8u8": {"reduce_range": False, "weight_type": "QUInt8"},
    "s8s8": {"reduce_range": False, "activation_type": "QInt8"},
    "7-bit pct": {"reduce_range": True, "calibrate_method": "Percentile"},
}


def probe_u8s8() -> str:
    """Whether onnxruntime's uint8 x int8 integer matmul saturates on this (or the emulated) CPU."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    out = []
    for bval in (-128, 64):
        b = np.full((k, 8), bval, dtype=np.int8)
        graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
                                  [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k])],
                                  [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 8])],
                                  [numpy_helper.from_array(b, "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = int(session.run(None, {"A": np.full((1, k), 255, dtype=np.uint8)})[0][0, 0])
        exact = 255 * bval * k
        out.append(f"255 x {bval}: {'exact' if got == exact else f'SATURATED ({got} for {exact})'}")
    return "u8s8 MatMulInteger probe: " + ", ".join(out)


def scores(path: str | os.PathLike, batches: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    from iipa.model.onnx_format import INPUT_NAME

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {INPUT_NAME: b})[0].reshape(-1) for b in batches])


def worker(job: Path) -> None:
    """Under emulation: score the job's models on its batches, write the scores beside it."""
    spec = json.loads(job.read_text())
    print(probe_u8s8(), flush=True)
    batches = [np.load(p) for p in spec["batches"]]
    np.savez(spec["out"], **{name: scores(path, batches) for name, path in spec["models"].items()})


def agreement(ref: np.ndarray, other: np.ndarray) -> str:
    from scipy.stats import spearmanr

    d = np.abs(ref - other) / ref.std(ddof=1)
    return f"Spearman {spearmanr(ref, other).statistic:.4f}  max|d|/sd {d.max():.3f}  median|d|/sd {np.median(d):.4f}"


def speed(paths: dict[str, Path], size: int, batch: int, seconds: float, rounds: int) -> dict[str, float]:
    import onnxruntime as ort

    from iipa.model.onnx_format import INPUT_NAME

    x = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    sessions = {k: ort.InferenceSession(os.fspath(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for name, session in sessions.items():
            session.run(None, {INPUT_NAME: x})
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                session.run(None, {INPUT_NAME: x})
                n += batch
            rates[name].append(n / (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in rates.items()}


def make_model(arch: str):
    import torch

    from iipa import PopularityNet
    from iipa.backbones.popularity_net import list_backbones
    from iipa.model.record import load_model

    torch.manual_seed(0)
    if arch == "tiny":
        return PopularityNet("tiny", reference={"mean": 0.0, "std": 1.0, "source": "test"})
    if arch in list_backbones():
        return PopularityNet(arch, profile="authors" if arch == "resnet50" else None)
    return load_model(arch, download=False)  # named weights or a model file


def emulate(cpu: str, tmp: Path, models: dict[str, Path], batches: list[np.ndarray]) -> dict[str, np.ndarray]:
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("--emulate needs qemu-x86_64 (Debian/Ubuntu: apt-get install qemu-user)")
    files = []
    for i, b in enumerate(batches):
        files.append(str(tmp / f"batch{i}.npy"))
        np.save(files[-1], b)
    job = tmp / "job.json"
    out = tmp / "emulated.npz"
    job.write_text(json.dumps({"batches": files, "models": {k: str(v) for k, v in models.items()}, "out": str(out)}))
    t = time.perf_counter()
    run = subprocess.run([qemu, "-cpu", cpu, sys.executable, __file__, "--worker", str(job)],
                         capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() + run.stderr.splitlines() if "TCG doesn't support" not in line]
    print(f"  emulated {cpu} ({time.perf_counter() - t:.0f} s): " + "\n  ".join(lines))
    if run.returncode:
        raise SystemExit(f"emulated run failed ({run.returncode})")
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def bench_arch(arch: str, args: argparse.Namespace, tmp: Path) -> None:
    from _photos import jpeg_photos

    from iipa.model.export import export_onnx
    from iipa.model.quantize import (
        SETTINGS,
        calibration_images,
        prepared_batches,
        quantize_onnx,
        split_held_apart,
    )

    model = make_model(arch).eval()
    profile = model.profile
    label = Path(arch).name
    fp32 = export_onnx(model, tmp / f"{label}.onnx")
    if args.photos:
        real = calibration_images(args.photos)[0]
        random.Random(0).shuffle(real)
        calib, photos = real[: args.calib_n], real[args.calib_n: args.calib_n + args.n]
    else:
        calib, _ = split_held_apart(calibration_images(None)[0])
        photos = []
        # Seed 1: other crops than score.py's seed 0; none of them is a calibration photo.
        for i, data in enumerate(jpeg_photos(args.n, args.size, seed=1)):
            photos.append(tmp / f"{label}-photo{i:03d}.jpg")
            photos[-1].write_bytes(data)
    batches = list(prepared_batches(profile, [str(p) for p in photos]))
    files = {"fp32": fp32}
    for name, change in CANDIDATES.items():
        if args.candidates and name not in args.candidates:
            continue
        t = time.perf_counter()
        files[name] = tmp / f"{label}-{name.replace(' ', '-')}.onnx"
        quantize_onnx(fp32, files[name], profile, calib, replace(SETTINGS, **change))
        print(f"  {label} {name}: quantised on {len(calib)} photos in {time.perf_counter() - t:.1f} s")
    native = {k: scores(p, batches) for k, p in files.items()}
    rates = speed(files, profile.input_size, args.batch, args.seconds, args.rounds)
    default = next(k for k, c in CANDIDATES.items() if replace(SETTINGS, **c) == SETTINGS)
    print(f"\n{label} ({profile.name} profile, {profile.input_size} px), {len(native['fp32'])} held-apart photos, "
          f"fp32 scores sd {native['fp32'].std(ddof=1):.4f}; this CPU's kernels:")
    print(f"  {'settings':12s} {'img/s':>8s} {'x fp32':>7s}  agreement with fp32")
    for name in files:
        agree = "(reference)" if name == "fp32" else agreement(native["fp32"], native[name])
        mark = "  <- iipa's default" if name == default else ""
        print(f"  {name:12s} {rates[name]:8.1f} {rates[name] / rates['fp32']:7.2f}  {agree}{mark}")
    if args.emulate:
        n = min(args.emulate_n, len(photos))
        few = list(prepared_batches(profile, [str(p) for p in photos[:n]]))
        for cpu in args.emulate:
            emulated = emulate(cpu, tmp, {k: v for k, v in files.items() if k != "fp32"}, few)
            print(f"  {cpu} kernels, {n} photos: agreement with fp32 (this CPU), and with the same file here")
            for name in (k for k in files if k != "fp32"):
                same = np.abs(emulated[name] - native[name][:n]).max()
                print(f"  {name:12s} {agreement(native['fp32'][:n], emulated[name])}  "
                      f"max|d| vs this CPU {same:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["tiny", "resnet50"])
    ap.add_argument("--n", type=int, default=48, help="held-apart photos to compare on (default 48)")
    ap.add_argument("--size", type=int, default=320, help="side of the generated JPEGs")
    ap.add_argument("--photos", help="a folder of real photos to calibrate on and compare on instead")
    ap.add_argument("--calib-n", type=int, default=200, help="with --photos: photos to calibrate on")
    ap.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), help="settings to compare (default all)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--emulate", nargs="*", default=[], metavar="CPU", help="QEMU CPU models, e.g. Haswell-v4")
    ap.add_argument("--emulate-n", type=int, default=48, help="photos scored under emulation")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    import onnxruntime

    from iipa.backends.device import cpu_flags

    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    print(f"onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs ({', '.join(isa)}), "
          f"load average {os.getloadavg()[0]:.1f}; {probe_u8s8()}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            bench_arch(arch, args, Path(tmp))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
