"""int8 ONNX models: onnxruntime static quantisation, calibrated on photos.

:func:`export_int8` writes the fp32 graph (:func:`iipa.model.export.export_onnx`), lets
onnxruntime fold and infer shapes (``quant_pre_process``), then quantises it statically in
the QDQ format (:data:`SETTINGS`): int8 weights in 7 bits per output channel, so that no
x86-64 kernel can saturate (:class:`Int8Settings` gives the arithmetic), uint8 activations
whose ranges (MinMax) come from running calibration photos through the model, each prepared
by the model's own profile; the one-output score head stays fp32 (:func:`score_head_nodes`).
A quarter of the photos (at least 4) are held apart from calibration and used to report the
int8 model's agreement with fp32: Spearman rank correlation, max |Δscore| and max |Δscaled|
(0-100 scale). The file keeps the fp32 file's metadata (profile, reference, card) and adds
``quantization`` (method, settings, onnxruntime version, calibration, agreement) to
``iipa.info``, so it loads like any other export and its card says how it was made:
``make_scorer("model.int8.onnx")``, ``iipa score --model model.int8.onnx``.

Without calibration photos, the 40 licence-clean photos in ``iipa/assets/calibration``
are used (see its README); a few hundred of the user's own photos calibrate better.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iipa.backbones.popularity_net import PopularityNet
from iipa.errors import IIPAError
from iipa.fileio import atomic_path
from iipa.images import DEFAULT_MAX_PIXELS
from iipa.levels import reference_distribution
from iipa.model.export import export_onnx
from iipa.model.onnx_format import INFO_KEY, INPUT_NAME
from iipa.profiles import Profile, prepare_item

DEFAULT_CALIBRATION = Path(__file__).parents[1] / "assets" / "calibration"


@dataclass(frozen=True)
class Int8Settings:
    """What :func:`quantize_onnx` asks of onnxruntime's ``quantize_static`` (its own names and
    values), recorded in every int8 file.

    The default cannot saturate on any x86-64 kernel. Without VNNI (AVX2 only, and AVX-512
    without VNNI), onnxruntime's u8 x s8 kernels multiply with ``vpmaddubsw``, which adds two
    uint8 x int8 products into one *saturating* int16: with 8-bit weights a pair reaches
    2 * 255 * 128 = 65280 > 32767 and is clipped, so the result depends on the CPU (VNNI and
    AMX accumulate in int32). ``reduce_range`` keeps weights in 7 bits, [-64, 64], so a pair
    is at most 2 * 255 * 64 = 32640 <= 32767: exact on every kernel, the same integers
    everywhere. Activations keep their 8 bits (onnxruntime reduces only weights). This is
    onnxruntime's own advice for CPUs without VNNI; it costs one bit of weight precision
    (a little agreement with fp32) and no measurable speed (``benchmarks/int8.py`` measures
    both, and runs the kernels of a CPU without VNNI under QEMU)."""

    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = True
    per_channel: bool = True
    quant_format: str = "QDQ"
    calibrate_method: str = "MinMax"

    def describe(self) -> str:
        weights = "7-bit (reduce_range)" if self.reduce_range else "8-bit"
        return (f"onnxruntime static quantisation, {self.quant_format}: {self.weight_type} {weights} weights "
                f"{'per output channel' if self.per_channel else 'per tensor'}, {self.activation_type} activations, "
                f"{self.calibrate_method} calibration; the score head stays fp32")

    def onnxruntime_kwargs(self) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        return {"activation_type": QuantType[self.activation_type], "weight_type": QuantType[self.weight_type],
                "reduce_range": self.reduce_range, "per_channel": self.per_channel,
                "quant_format": QuantFormat[self.quant_format],
                "calibrate_method": CalibrationMethod[self.calibrate_method]}


SETTINGS = Int8Settings()


def calibration_images(source: str | os.PathLike | Sequence[str] | None) -> tuple[list[str], str]:
    """Image paths from a folder, a .txt/.csv list, a glob or a list (default: the shipped
    set), and a description of where they came from."""
    from iipa.inputs import expand_inputs

    if source is None:
        paths = expand_inputs([str(DEFAULT_CALIBRATION)])
        return paths, f"{len(paths)} shipped photos (iipa/assets/calibration, from scikit-image)"
    sources = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
    paths = expand_inputs(sources)
    if len(paths) < 8:
        raise IIPAError(f"--calibration {', '.join(sources)}: {len(paths)} images found; need at least 8 "
                        "(a few hundred of your own photos calibrate best)")
    return paths, f"{len(paths)} photos from {', '.join(sources)}"


def split_held_apart(paths: Sequence[str], *, fraction: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """(calibration, held apart): a seeded quarter (at least 4) is kept for the agreement check."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    held = max(4, int(len(shuffled) * fraction))
    return shuffled[held:], shuffled[:held]


def prepared_batches(profile: Profile, paths: Sequence[str], batch: int = 8) -> Iterator[np.ndarray]:
    """uint8 N x 3 x S x S batches of the readable images among ``paths``."""
    good = []
    for path in paths:
        views, _ = prepare_item(profile, path, 1, DEFAULT_MAX_PIXELS)
        if views is not None:
            good.append(np.ascontiguousarray(views[0].transpose(2, 0, 1)))  # HWC -> the graph's CHW
        if len(good) == batch:
            yield np.stack(good)
            good = []
    if good:
        yield np.stack(good)


def _reader(profile: Profile, paths: Sequence[str]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = prepared_batches(profile, paths)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return Reader()


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, profile: Profile,
                  calibration: Sequence[str], settings: Int8Settings = SETTINGS) -> None:
    """Statically quantise ``fp32_path`` to ``out_path`` as ``settings`` say, calibrated on ``calibration``."""
    try:
        from onnxruntime.quantization import quantize_static
    except ImportError as exc:
        raise IIPAError(f"int8 export needs onnxruntime: pip install 'iipa[onnx]' ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="iipa-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        pre_process(fp32_path, pre)
        quantize_static(os.fspath(pre), os.fspath(out_path), _reader(profile, calibration),
                        nodes_to_exclude=score_head_nodes(pre), **settings.onnxruntime_kwargs())


def pre_process(fp32_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """onnxruntime's folding and shape inference before quantisation. ``auto_merge``: the
    multi-stage Lite heads concatenate features whose symbolic batch dims the shape inference
    otherwise cannot unify ("Incomplete symbolic shape inference")."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(os.fspath(fp32_path), os.fspath(out_path), auto_merge=True)


def score_head_nodes(path: str | os.PathLike) -> list[str]:
    """The fully connected score head's nodes. They stay fp32: one output channel means one
    weight scale for all 1280-2048 inputs, and the head is a negligible share of the work.
    Measured on 120 Instagram photos (ResNet-50, random weights): max |Δscore| against fp32
    7.3 with the head quantised, 1.1 without, same speed and Spearman (0.999)."""
    import onnx

    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in ("Gemm", "MatMul")]


def agreement(fp32_scores: np.ndarray, int8_scores: np.ndarray, reference: dict[str, Any] | None) -> dict[str, Any]:
    """Spearman, max |Δscore| and max |Δscaled| of int8 against fp32 scores of the same images.

    Scaled scores use the model's reference distribution, or without one the fp32 scores'
    own mean and standard deviation."""
    from scipy.stats import norm, spearmanr

    a, b = np.asarray(fp32_scores, dtype=np.float64), np.asarray(int8_scores, dtype=np.float64)
    fit = reference if reference and reference.get("std") else reference_distribution(a.tolist())
    basis = "the model's reference" if fit is reference else "these fp32 scores"
    mean, std = (float(fit["mean"]), float(fit["std"]) or 1.0) if fit else (0.0, 1.0)
    scaled = np.abs(norm.cdf((a - mean) / std) - norm.cdf((b - mean) / std)) * 100.0
    return {"n": int(a.size), "spearman": float(spearmanr(a, b).statistic) if a.size > 2 else float("nan"),
            "max_abs_delta": float(np.abs(a - b).max()), "max_abs_delta_scaled": float(scaled.max()),
            "scaled_basis": basis}


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _session_scores(path: str | os.PathLike, batches: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {INPUT_NAME: b})[0].reshape(-1) for b in batches])


def _write_metadata(path: Path, info: dict[str, Any], source_props: dict[str, str], dest: Path) -> None:
    """``path`` with iipa's metadata (``info`` added), written atomically to ``dest``."""
    import onnx

    proto = onnx.load(os.fspath(path))
    del proto.metadata_props[:]
    for key, value in {**source_props, INFO_KEY: json.dumps(info)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(dest) as tmp:
        onnx.save(proto, os.fspath(tmp))


def export_int8(model: PopularityNet, path: str | os.PathLike, *,
                calibration: str | os.PathLike | Sequence[str] | None = None, opset: int = 17,
                settings: Int8Settings = SETTINGS) -> dict[str, Any]:
    """Write ``model`` as an int8 ONNX file at ``path``; returns the quantisation record
    (method and settings, calibration, agreement with fp32 on the held-apart photos)."""
    import onnx

    paths, described = calibration_images(calibration)
    calib, held = split_held_apart(paths)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-int8-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", opset=opset)
        int8 = Path(tmp) / "int8.onnx"
        quantize_onnx(fp32, int8, model.profile, calib, settings)
        batches = list(prepared_batches(model.profile, held))
        if not batches:
            raise IIPAError("none of the held-apart calibration images could be read")
        record = {"precision": "int8", "method": settings.describe(), "settings": asdict(settings),
                  "onnxruntime": _onnxruntime_version(), "calibration": described,
                  "calibration_images": len(calib), "held_apart_images": len(held),
                  "agreement_with_fp32": agreement(_session_scores(fp32, batches), _session_scores(int8, batches),
                                                   model.reference)}
        props = {p.key: p.value for p in onnx.load(os.fspath(fp32), load_external_data=False).metadata_props}
        info = {**json.loads(props.get(INFO_KEY, "{}")), "quantization": record}
        _write_metadata(int8, info, props, path)
    return record
