"""int8 export: a statically quantised ONNX model that loads like any other, with its card,
profile, reference and its measured agreement with fp32."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from scipy.stats import spearmanr

from iipa import make_scorer
from iipa.model.onnx_format import read_onnx_metadata
from iipa.model.quantize import DEFAULT_CALIBRATION, calibration_images, export_int8, split_held_apart
from iipa.model.record import load_model


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
    assert q == json.loads(json.dumps(record))


def test_int8_scores_like_fp32_through_the_scorer(int8_file, tiny_checkpoint, photo_dir):
    path, record = int8_file
    agree = record["agreement_with_fp32"]
    assert agree["n"] == 10 and agree["spearman"] > 0.9 and agree["scaled_basis"] == "the model's reference"
    scorer = make_scorer(path, num_workers=0)
    assert scorer.runtime == "onnx" and scorer.precision == "int8"
    paths = sorted(DEFAULT_CALIBRATION.glob("*.jpg"))[:12] + sorted(photo_dir.glob("*.jpg"))
    int8 = np.array(scorer.score(paths))
    fp32 = np.array(make_scorer(tiny_checkpoint, precision="fp32", num_workers=0).score(paths))
    assert spearmanr(int8, fp32).statistic > 0.9
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
