"""The CLI contract's shared pieces: argument types that validate while parsing, the model
and loading argument groups, the checks every command gets before it starts (device, model),
and the progress bar.

Nothing here imports torch, pandas or numpy at import time: `iipa --help` builds every
command's parser, and must not pay seconds and a gigabyte for it.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from iipa.errors import IIPAError
from iipa.weights import DEFAULT_MODEL

# iipa.images.DEFAULT_MAX_PIXELS, repeated here because iipa.images imports numpy and PIL;
# tests/test_cli_contract.py checks that the two agree.
DEFAULT_MAX_PIXELS = 100_000_000
CROPS = (1, 5, 10)  # iipa.profiles.CROPS (that module imports numpy and PIL); the same test checks it
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# File headers of the model files iipa loads: torch.save's zip, a legacy pickle, ONNX protobuf.
_ZIP_MAGIC, _PICKLE_PROTOCOL = b"PK\x03\x04", 0x80


# --- argument types: a bad value is a usage error (exit 2, the sub-command's usage) ---

def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _float(text: str, expected: str = "a number") -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _float(text, "a number between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def device_name(text: str) -> str:
    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def backbone_name(text: str) -> str:
    """A registered backbone. Imports the registry (torch) only when the flag is given."""
    from iipa.models import list_backbones

    known = list_backbones()
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown backbone {text!r}; known: {', '.join(known)}")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# --- argument groups ---

def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL,
                        precision: bool = True) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default,
                   help=f"checkpoint path or named weights (default: {default or 'none'}; see `iipa models`)")
    g.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    if precision:
        g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                       help="auto: fp32 (bf16 moved EfficientNet scores by up to 8 points of 100; "
                            "pass bf16 for speed where that is acceptable); default: auto")
    add_offline_argument(g)


def add_offline_argument(parser: argparse.ArgumentParser | Any) -> None:
    # SUPPRESS: a sub-command's default must not undo `iipa --offline COMMAND`.
    parser.add_argument("--offline", action="store_true", default=argparse.SUPPRESS,
                        help="never download weights (also: IIPA_OFFLINE=1)")


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loading")
    g.add_argument("--batch-size", type=positive_int, default=32, help="images per model call (default: 32)")
    g.add_argument("--workers", type=nonnegative_int, default=None, help="decoding threads (default: one per CPU)")
    g.add_argument("--crops", type=int, default=1, choices=CROPS,
                   help="1: the profile's centre crop; 5: corners + centre; 10: the same + mirror images "
                        "(an image's score is the mean over its views; default 1)")
    g.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as decompression bombs (default: {DEFAULT_MAX_PIXELS})")


def add_table_output_arguments(parser: argparse.ArgumentParser | Any, formats: tuple[str, ...] | None = None) -> None:
    """`-o/--output FILE` and `--format`: the one spelling of "where and how to write the result table"."""
    from iipa.output import FORMATS

    formats = formats or FORMATS
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the table here instead of stdout (format from the extension)")
    parser.add_argument("--format", "-f", choices=formats,
                        help=f"{', '.join(formats)} (default: from --output's extension, else {formats[0]})")


# --- checks before a command starts: fail in a second, not after minutes of work ---

def check_args(args: argparse.Namespace) -> None:
    """Validate what parsing cannot: the device exists, the model names a usable file or weights."""
    device = getattr(args, "device", None)
    if device not in (None, "auto", "cpu"):
        check_device(device)
    model = getattr(args, "model", None)
    if isinstance(model, str):
        check_model_spec(model)


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise IIPAError(f"--device {device}: no CUDA GPU is usable here; use --device cpu (or auto)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise IIPAError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise IIPAError("--device mps: Apple's MPS backend is not available here; use --device cpu (or auto)")


def check_model_spec(spec: str) -> None:
    """A readable model file (by its header) or registered weights; else one clear line."""
    from iipa.weights import list_weights

    path = Path(spec).expanduser()
    if path.is_dir():
        raise IIPAError(f"--model {spec}: is a folder; give a checkpoint file (e.g. {path / 'best.pt'})")
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not head.startswith(_ZIP_MAGIC) and not (head and head[0] == _PICKLE_PROTOCOL):
            raise IIPAError(f"--model {spec}: not a model file (expected a PyTorch checkpoint .pt/.pth "
                            f"or an exported .onnx file)")
        return
    if spec in list_weights():
        return
    if os.sep in spec or "/" in spec or path.suffix.lower() in (".pt", ".pth", ".onnx", ".ckpt"):
        raise IIPAError(f"--model {spec}: no such file")
    raise IIPAError(f"--model {spec}: neither a file nor named weights (known: {', '.join(list_weights())})")


# --- progress ---

def progress_bar(total: int, *, enabled: bool | None, desc: str):
    """A tqdm bar on stderr when it is a TTY (or when forced); see :func:`iipa.runtime.progress_bar`."""
    from iipa.runtime import progress_bar as bar

    return bar(total, enabled=enabled, desc=desc)
