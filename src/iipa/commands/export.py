"""Export a model for other runtimes (ONNX), with its preprocessing and reference as metadata.

The ONNX graph takes a uint8 batch N x 3 x S x S (RGB, resized and cropped as the stored
profile says; normalisation is inside the graph) and returns N float32 scores; the batch
axis is dynamic. The format comes from --output's extension (.onnx). Score with it like
any model: `iipa score photos/ --model model.onnx` (onnxruntime; also rank, serve and
`iipa.make_scorer("model.onnx")`).

--quantize int8 writes an int8 model (onnxruntime static quantisation, QDQ, 7-bit per-channel
weights: the same integers on every x86-64 CPU, with or without VNNI), calibrated on
--calibration photos (a folder, a .txt/.csv list or a glob; default: 40 photos shipped with
iipa), and prints its agreement with fp32 on a held-apart quarter of them (Spearman,
max |Δscore|, max |Δscaled|); the same record, with the settings, is stored in the file.
About 3x faster than fp32 on CPUs with VNNI/AMX; scores move slightly (see the record).
--check compares an fp32 export with PyTorch on random inputs and fails if max |Δ| >= 1e-3.

examples:
  iipa export --model run/best.pt --output model.onnx --check
  iipa export --model authors-resnet50 --output authors.int8.onnx --quantize int8 --calibration my_photos/
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import DEFAULT_MODEL, add_offline_argument, positive_int
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "export"
# What an int8 model should keep of fp32 on photos: rank order (Spearman) and points of 100
# (the bar ResNet-50's int8 export meets).
GOOD_SPEARMAN, GOOD_SCALED = 0.99, 3.0
HELP = "export a model to ONNX, fp32 or int8 (dynamic batch, profile and reference as metadata)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"checkpoint path or named weights (default {DEFAULT_MODEL})")
    parser.add_argument("--output", "-o", required=True, metavar="FILE", help="file to write; format from the extension (.onnx)")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none",
                        help="int8: static int8 quantisation calibrated on photos (default: none, fp32)")
    parser.add_argument("--calibration", nargs="+", metavar="DIR|LIST",
                        help="photos to calibrate int8 on: folders, .txt/.csv lists, globs "
                             "(default: the 40 photos shipped with iipa)")
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--check", action="store_true", help="verify an fp32 export against PyTorch")
    add_offline_argument(parser)


def run(args: argparse.Namespace) -> int:
    require("torch", "iipa export")
    from iipa.model.record import resolve_model

    if not str(args.output).lower().endswith(".onnx"):
        raise IIPAError(f"--output {args.output}: only ONNX export is supported; name the file *.onnx")
    if args.calibration and args.quantize != "int8":
        raise IIPAError("--calibration only applies with --quantize int8")
    if args.check and args.quantize == "int8":
        raise IIPAError("--check compares an fp32 export with PyTorch; an int8 export reports its own agreement")
    model = resolve_model(args.model).load_torch()
    size = model.profile.input_size
    if args.quantize == "int8":
        from iipa.model.quantize import export_int8

        record = export_int8(model, args.output, calibration=args.calibration, opset=args.opset)
        agree = record["agreement_with_fp32"]
        print(f"wrote {args.output} ({model.arch}, int8, profile {model.profile.name}, input uint8 Nx3x{size}x{size}); "
              f"calibrated on {record['calibration_images']} of {record['calibration']}")
        print(f"int8 vs fp32 on {agree['n']} held-apart photos: Spearman {agree['spearman']:.4f}, "
              f"max |delta| {agree['max_abs_delta']:.4f}, max |delta scaled| {agree['max_abs_delta_scaled']:.2f} "
              f"(scaled against {agree['scaled_basis']})")
        if not (agree["spearman"] >= GOOD_SPEARMAN and agree["max_abs_delta_scaled"] <= GOOD_SCALED):
            print(f"iipa export: warning: int8 moves this model's scores more than Spearman >= {GOOD_SPEARMAN} and "
                  f"|delta scaled| <= {GOOD_SCALED} allow; calibrate on more of your own photos (--calibration) "
                  "or use the fp32 export", file=sys.stderr)
        return 0
    from iipa.model.export import export_onnx, onnx_parity

    path = export_onnx(model, args.output, opset=args.opset)
    print(f"wrote {path} ({model.arch}, profile {model.profile.name}, input uint8 Nx3x{size}x{size})")
    if args.check:
        delta = onnx_parity(model, path)
        print(f"onnxruntime vs PyTorch: max |delta| = {delta:.2e}")
        if not delta < 1e-3:
            raise IIPAError(f"{path}: onnxruntime differs from PyTorch by {delta:.2e} (>= 1e-3)")
    return 0
