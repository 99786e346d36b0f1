"""Export a model for other runtimes (ONNX), with its preprocessing and reference as metadata.

The ONNX graph takes a uint8 batch N x 3 x S x S (RGB, resized and cropped as the stored
profile says; normalisation is inside the graph) and returns N float32 scores; the batch
axis is dynamic. Score with it: `iipa score photos/ --model model.onnx` (onnxruntime).
--check compares onnxruntime with PyTorch on random inputs and fails if max |Δ| >= 1e-3.

examples:
  iipa export --model run/best.pt --format onnx --out model.onnx
  iipa export --model authors-resnet50 --out authors.onnx --check
"""

from __future__ import annotations

import argparse

from iipa.errors import IIPAError
from iipa.export import export_onnx, onnx_parity
from iipa.weights import DEFAULT_MODEL, load_model

NAME = "export"
HELP = "export a model to ONNX (dynamic batch, profile and reference as metadata)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"checkpoint path or named weights (default {DEFAULT_MODEL})")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    parser.add_argument("--out", "-o", required=True, help="file to write (e.g. model.onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--check", action="store_true", help="verify onnxruntime against PyTorch after export")


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    path = export_onnx(model, args.out, opset=args.opset)
    print(f"wrote {path} ({model.arch}, profile {model.profile.name}, input uint8 Nx3x"
          f"{model.profile.input_size}x{model.profile.input_size})")
    if args.check:
        delta = onnx_parity(model, path)
        print(f"onnxruntime vs PyTorch: max |delta| = {delta:.2e}")
        if not delta < 1e-3:
            raise IIPAError(f"{path}: onnxruntime differs from PyTorch by {delta:.2e} (>= 1e-3)")
    return 0
