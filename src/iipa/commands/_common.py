"""The CLI contract's shared pieces: argument types that validate while parsing, the model
and loading argument groups, the checks every command gets before it starts (device, model),
and the progress bar.

Nothing here imports torch, pandas or numpy at import time: `iipa --help` builds every
command's parser, and must not pay seconds and a gigabyte for it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from iipa.constants import CROPS, DEFAULT_MODEL, OPTIMIZE, PRECISIONS, RUNTIMES
from iipa.errors import IIPAError
from iipa.extras import explain_missing
from iipa.inputpolicy import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


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


def port_number(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text}")
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
    """A registered backbone. Imports the registry (torch) only when the flag is given; without
    torch the name is taken unchecked, and the command says which extra it needs (one line,
    not a usage error about an option the user may not even have given: argparse also
    converts string defaults)."""
    try:
        from iipa.backbones.popularity_net import list_backbones
    except ModuleNotFoundError as exc:
        if explain_missing(exc):
            return text
        raise

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
                        precision: bool = True, runtime: bool = True) -> Any:
    """--model, --device, --precision, --offline and (``runtime``) --runtime and --optimize."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default,
                   help=f"named weights, checkpoint (.pt/.pth) or exported .onnx file "
                        f"(default: {default or 'none'}; see `iipa models`)")
    g.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    if precision:
        g.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto: fp32 (bf16 moved EfficientNet scores by up to 8 points of 100; "
                            "pass bf16 for speed where that is acceptable); default: auto")
    if runtime:
        g.add_argument("--runtime", choices=RUNTIMES, default="auto",
                       help="auto: the only backend the model has weights for; with both (the default model "
                            "ships an ONNX export), onnxruntime on the CPU in fp32 without --optimize -- same "
                            "scores, several times faster -- else PyTorch. torch or onnx force one (default: auto)")
        g.add_argument("--optimize", default="none", choices=OPTIMIZE,
                       help="PyTorch only. jit: trace and freeze the model (~20%% faster ResNet-50 on the CPU, "
                            "seconds to build); compile: torch.compile (similar, ~1 min to build); default: none")
    add_offline_argument(g)
    return g


def add_offline_argument(parser: argparse.ArgumentParser | Any) -> None:
    # SUPPRESS: a sub-command's default must not undo `iipa --offline COMMAND`.
    parser.add_argument("--offline", action="store_true", default=argparse.SUPPRESS,
                        help="never download weights (also: IIPA_OFFLINE=1)")


def add_crops_argument(parser: argparse.ArgumentParser | Any) -> None:
    parser.add_argument("--crops", type=int, default=None, choices=CROPS,
                        help="views per image: 1: the profile's centre crop; 5: corners + centre; 10: the same + "
                             "mirror images (an image's score is the mean over its views; default: the model's, "
                             "see `iipa model-info`)")


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loading")
    g.add_argument("--batch-size", type=positive_int, default=32, help="images per model call (default: 32)")
    g.add_argument("--workers", type=nonnegative_int, default=None, help="decoding threads (default: one per CPU)")
    add_crops_argument(g)
    g.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as decompression bombs (default: {DEFAULT_MAX_PIXELS})")
    g.add_argument("--max-bytes", type=positive_int, default=DEFAULT_MAX_BYTES,
                   help=f"refuse larger image files from their size, before reading them: an error row naming "
                        f"the file and the limit (default: {DEFAULT_MAX_BYTES} = {DEFAULT_MAX_BYTES // 2**20} MiB)")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and loading options every command that scores images takes alike."""
    add_model_arguments(parser)
    add_loader_arguments(parser)


def make_scorer_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """The :func:`iipa.scoring.make_scorer` the model and loading options ask for."""
    from iipa.scoring import make_scorer

    options = {"runtime": args.runtime, "device": args.device, "precision": args.precision,
               "optimize": args.optimize, "crops": args.crops, "batch_size": args.batch_size,
               "num_workers": args.workers, "max_pixels": args.max_pixels, "max_bytes": args.max_bytes}
    options.update(overrides)
    return make_scorer(args.model, **options)


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
    """Validate what parsing cannot: the device exists; --model names a file or weights
    (:func:`iipa.model.record.resolve_model` answers, and the command reads the same record)."""
    device = getattr(args, "device", None)
    if device not in (None, "auto", "cpu"):
        check_device(device)
    model = getattr(args, "model", None)
    if isinstance(model, str):
        from iipa.model.record import resolve_model

        args.model = resolve_model(model)


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


# --- progress ---

# --- exit codes of a result that rests on part of the input ---

COVERAGE_EXAMPLES = 5  # names shown in the summary line; the full list is in the command's output


def coverage_code(total: int, failed: int) -> int:
    """The one rule for a result computed from part of its input: exit 0 when every one of
    ``total`` items counted, 1 when ``failed`` of them did not, 2 when none did (or there was
    nothing), so that no command reports success on nothing. Commands that list failed items
    themselves (score, rank, fetch) take the code; the others call :func:`coverage_exit`."""
    if total <= 0 or failed >= total:
        return 2
    return 1 if failed > 0 else 0


def coverage_exit(command: str, *, total: int, failed: int, what: str, why: str,
                  examples: Sequence[Any] = ()) -> int:
    """:func:`coverage_code`, said on stderr: nothing for 0; for 1 a summary line with the count
    and the first few names; for 2 an :class:`IIPAError` (the CLI prints it as one line).
    ``what`` names the items ("pairs"), ``why`` what went wrong with them ("lack an image in
    photos/")."""
    code = coverage_code(total, failed)
    if code == 0:
        return 0
    if total <= 0:
        raise IIPAError(f"no {what} to work on: nothing to report")
    from iipa.fileio import printable

    shown = [str(printable(e)) for e in list(examples)[:COVERAGE_EXAMPLES]]
    more = f", … {failed - len(shown):,} more" if failed > len(shown) and shown else ""
    names = f" (e.g. {', '.join(shown)}{more})" if shown else ""
    if code == 2:
        raise IIPAError(f"none of the {total:,} {what} could be used: all {why}{names}")
    print(f"iipa {command}: {failed:,} of {total:,} {what} {why}{names}; the result rests on the other "
          f"{total - failed:,}", file=sys.stderr)
    return 1


# --- servers ---

def say_listening(command: str, sock: Any, note: str) -> str:
    """Print (stderr) and return the URL a server answers on: the bound socket's own address,
    so ``--port 0`` shows the port it got and an IPv6 host gets its brackets."""
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host
    url = f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
    bound = f" (bound to all addresses: {host})" if host in ("0.0.0.0", "::") else ""
    print(f"iipa {command}: listening on {url}{bound}; {note}", file=sys.stderr, flush=True)
    return url
