"""int8 export: a statically quantised ONNX model that loads like any other, with its card,
profile, reference, settings and its measured agreement with fp32."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from scipy.stats import spearmanr

from iipa import make_scorer
from iipa.model.onnx_format import JSON_KEYS, TEXT_KEYS, read_onnx_metadata
from iipa.model.quantize import (
    DEFAULT_CALIBRATION,
    SETTINGS,
    calibration_images,
    export_int8,
    pre_process,
    split_held_apart,
)
from iipa.model.record import load_model

# Photos none of the calibration set comes from (that one is astronaut, chelsea, coffee,
# rocket, hubble_deep_field): scikit-image's other bundled images, colour and grey.
HELD_APART_SOURCES = ("immunohistochemistry", "retina", "logo", "camera", "coins", "moon", "brick", "grass",
                      "gravel", "cell", "page", "text")


@pytest.fixture(scope="module")
def held_apart_photos() -> list[np.ndarray]:
    """48 small photos: seeded crops of HELD_APART_SOURCES, tinted, colour- and brightness-jittered."""
    import skimage.data
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(1)
    sources = []
    for name in HELD_APART_SOURCES:
        arr = getattr(skimage.data, name)()
        arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]
        sources.append(Image.fromarray(arr))
    out = []
    for i in range(48):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.3, 1.0)), int(h * rng.uniform(0.3, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        photo = img.crop((x, y, x + cw, y + ch)).resize((96, 96), Image.BILINEAR)
        tint = Image.new("RGB", photo.size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        photo = Image.blend(photo, tint, float(rng.uniform(0.0, 0.4)))
        photo = ImageEnhance.Color(photo).enhance(rng.uniform(0.5, 1.5))
        photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.6, 1.4))
        out.append(np.asarray(photo))
    return out


@pytest.fixture(scope="module")
def int8_file(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    record = export_int8(load_model(tiny_checkpoint), path)  # the shipped calibration photos
    return path, record


def test_int8_file_is_quantised_and_keeps_the_card(int8_file, tiny_checkpoint):
    path, record = int8_file
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    head = [n for n in graph.node if n.op_type == "Gemm"]
    weights = {t.name: t for t in graph.initializer}
    assert head and weights[head[0].input[1]].data_type == onnx.TensorProto.FLOAT  # the score head stays fp32
    meta, model = read_onnx_metadata(path), load_model(tiny_checkpoint)
    assert meta["profile"] == model.profile and meta["reference"] == model.reference and meta["arch"] == "tiny"
    q = meta["info"]["quantization"]
    assert q["precision"] == "int8" and q["held_apart_images"] == 10 and q["calibration_images"] == 30
    assert q["settings"] == asdict(SETTINGS) and q["settings"]["reduce_range"] and "7-bit" in q["method"]
    assert q == json.loads(json.dumps(record))
    fp32_keys = sorted(p.key for p in onnx.load(str(path), load_external_data=False).metadata_props)
    assert fp32_keys == sorted([*TEXT_KEYS.values(), *JSON_KEYS.values()])  # the same table as an fp32 export


def test_int8_integers_cannot_saturate_on_any_x86_kernel(int8_file):
    """Without VNNI, onnxruntime adds two uint8 x int8 products into one saturating int16
    (vpmaddubsw). With every quantised weight in [-64, 64] (7 bits, zero point 0) and every
    activation uint8, a pair is at most 2 * 255 * 64 = 32640 <= 32767: every CPU computes
    the same integers, so the agreement measured here holds on AVX2, AVX-512, VNNI and AMX."""
    path, _ = int8_file
    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    stored = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init]
    assert {init[n.input[0]].dtype for n in stored} == {np.dtype(np.int8), np.dtype(np.int32)}  # weights, biases
    weights = [init[n.input[0]] for n in stored if init[n.input[0]].dtype == np.int8]
    assert all(-64 <= w.min() and w.max() <= 64 for w in weights)
    assert all((init[n.input[2]] == 0).all() for n in stored if len(n.input) > 2)
    activations = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert activations and all(init[n.input[2]].dtype == np.uint8 for n in activations)
    assert 2 * 255 * max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= np.iinfo(np.int16).max


def test_int8_scores_like_fp32_through_the_scorer(int8_file, tiny_checkpoint, held_apart_photos):
    path, record = int8_file
    agree = record["agreement_with_fp32"]
    assert agree["n"] == 10 and agree["scaled_basis"] == "the model's reference"
    scorer = make_scorer(path, num_workers=0)
    assert scorer.runtime == "onnx" and scorer.precision == "int8"
    int8 = np.array(scorer.score(held_apart_photos))
    fp32 = np.array(make_scorer(tiny_checkpoint, precision="fp32", num_workers=0).score(held_apart_photos))
    # 48 photos, where one swap of neighbours costs 12 / (48 * (48**2 - 1)) ~ 1e-4 of Spearman
    # (10 photos made one such swap a failure): 0.99 lets rank shifts whose squares sum to 184
    # through, neighbours trading places, not the reordering of a kernel that clips.
    assert len(int8) == 48 and spearmanr(int8, fp32).statistic >= 0.99
    assert not np.allclose(int8, fp32, atol=1e-7)  # it really is another model


def test_export_command_int8_and_score(run_cli, tiny_checkpoint, photo_dir, tmp_path):
    out = tmp_path / "m.int8.onnx"
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(str(p) for p in sorted(DEFAULT_CALIBRATION.glob("*.jpg"))[:16]))
    code, stdout, err = run_cli("export", "--model", tiny_checkpoint, "--output", out, "--quantize", "int8",
                                "--calibration", calib)
    assert code == 0, err
    assert "int8 vs fp32 on 4 held-apart photos: Spearman" in stdout and "calibrated on 12 of 16 photos" in stdout
    code, stdout, err = run_cli("score", photo_dir, "--model", out, "-f", "json")
    assert code == 0, err
    assert len(json.loads(stdout)) == 4 and all(r["level"] for r in json.loads(stdout))


def test_export_command_errors(run_cli, tiny_checkpoint, photo_dir, tmp_path):
    code, _, err = run_cli("export", "--model", tiny_checkpoint, "--output", tmp_path / "m.int8.onnx",
                           "--quantize", "int8", "--calibration", photo_dir)
    assert code == 2 and "4 images found; need at least 8" in err
    code, _, err = run_cli("export", "--model", tiny_checkpoint, "--output", tmp_path / "m.pt")
    assert code == 2 and "name the file *.onnx" in err
    code, _, err = run_cli("export", "--model", tiny_checkpoint, "--output", tmp_path / "m.onnx", "--calibration", photo_dir)
    assert code == 2 and "only applies with --quantize int8" in err


def test_held_apart_split_is_seeded_and_disjoint():
    paths, described = calibration_images(None)
    assert len(paths) == 40 and "shipped" in described
    calib, held = split_held_apart(paths)
    assert (calib, held) == split_held_apart(paths) and not set(calib) & set(held) and len(held) == 10


def test_service_runs_an_int8_file(int8_file, photo_dir):
    from fastapi.testclient import TestClient

    from iipa.serve import create_app

    path, _ = int8_file
    photo = (photo_dir / "coffee.jpg").read_bytes()
    expected = make_scorer(path, num_workers=0).score(photo)[0]
    with TestClient(create_app(str(path))) as client:
        resp = client.post("/v1/score", files=[("files", ("coffee.jpg", photo))])
        assert resp.status_code == 200, resp.text
        assert resp.json()["results"][0]["score"] == pytest.approx(expected, abs=1e-6)
        assert client.get("/v1/model").json()["precision"] == "int8"
        resp = client.post("/v1/explain", files={"file": ("coffee.jpg", photo)})
        assert resp.status_code == 501 and "ONNX" in resp.text


def test_the_default_models_graph_passes_quantisation_pre_processing(tmp_path):
    """The multi-stage EfficientNet-Lite head (instagram-lite0's ONNX file, shipped) gets
    through onnxruntime's shape inference, which int8 export runs first."""
    from iipa.model.record import resolve_model

    record = resolve_model("instagram-lite0", offline=True)
    assert record.onnx_file is not None and record.arch == "efficientnet_lite0_ms"
    pre_process(record.onnx_file, tmp_path / "pre.onnx")
    graph = onnx.load(str(tmp_path / "pre.onnx")).graph
    assert len(graph.value_info) >= len(graph.node)  # shapes inferred for the intermediate tensors
