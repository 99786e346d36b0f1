"""`iipa explain` and `iipa model-info` from the command line."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from explain_models import box_mask, detector_model, planted
from iipa import save_checkpoint
from iipa.levels import level_edges
from iipa.model.export import export_onnx

W, H = 120, 88
BOX = (34, 20, 58, 44)


@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory):
    model = detector_model()
    model.info = {"config": {"lr": 0.001}, "metrics": {"val_accuracy": 0.9}}
    return save_checkpoint(model, tmp_path_factory.mktemp("det") / "detector.pt")


def test_explain_writes_overlays_of_the_original_size(run_cli, tmp_path, detector_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(planted(W, H, BOX, 255)).save(src / "square.png")
    Image.fromarray(planted(64, 50, (0, 0, 10, 10), 116)).save(src / "plain.jpg")
    (src / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "out"
    code, stdout, err = run_cli("explain", src, "--out", out, "--model", detector_checkpoint, "--raw", "--format", "csv")
    assert code == 1 and "bad.jpg" in err
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(io.StringIO(stdout))}
    assert rows["bad.jpg"]["error"] == "not an image" and not rows["bad.jpg"]["overlay"]
    assert float(rows["square.png"]["score"]) > float(rows["plain.jpg"]["score"])
    assert rows["square.png"]["level"] == "excellent"
    overlay = Image.open(out / "square.gradcam.png")
    assert overlay.size == (W, H) and overlay.mode == "RGB"
    assert Image.open(out / "plain.gradcam.png").size == (64, 50)
    heat = np.load(out / "square.heatmap.npy")
    assert heat.shape == (H, W) and heat.dtype == np.float32
    assert heat[box_mask(W, H, BOX)].mean() > 10 * heat[~box_mask(W, H, BOX)].mean()
    assert Image.open(out / "square.heatmap.png").size == (W, H)


def test_explain_pair(run_cli, tmp_path, detector_checkpoint):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(planted(W, H, BOX, 255)).save(a)
    Image.fromarray(planted(W, H, (70, 28, 96, 54), 0)).save(b)
    out = tmp_path / "why"
    code, stdout, err = run_cli("explain", a, b, "--pair", "--out", out, "--model", detector_checkpoint, "--format", "json")
    assert code == 0, err
    rows = json.loads(stdout)
    assert rows[0]["score"] > rows[1]["score"]
    assert Image.open(out / "a.pair.gradcam.png").size == (W, H)
    assert Image.open(out / "a-vs-b.pair.png").height == 384
    code, _, err = run_cli("explain", a, "--pair", "--out", out, "--model", detector_checkpoint)
    assert code == 2 and "exactly two" in err


def test_model_info_text_and_json(run_cli, detector_checkpoint):
    code, text, err = run_cli("model-info", detector_checkpoint)
    assert code == 0, err
    assert "| architecture | tiny |" in text and "| val accuracy | 0.9 |" in text and "Eq. 7" in text
    code, out, _ = run_cli("model-info", "--model", detector_checkpoint, "--format", "json")
    card = json.loads(out)
    edges = level_edges(card["reference"])
    assert [b["level"] for b in card["levels"]] == ["poor", "bad", "fair", "good", "excellent"]
    assert [b["to"] for b in card["levels"][:4]] == pytest.approx(edges)
    assert card["levels"][0]["from"] is None and card["levels"][-1]["to"] is None
    assert card["training"]["metrics"] == {"val_accuracy": 0.9}
    assert card["profile"]["name"] == "small" and card["parameters"] > 1000


def test_model_info_of_onnx_and_named_weights_without_download(run_cli, tmp_path, detector_checkpoint):
    from iipa.model.record import load_model

    path = export_onnx(load_model(detector_checkpoint), tmp_path / "d.onnx")
    code, out, err = run_cli("model-info", path, "--format", "json")
    assert code == 0, err
    card = json.loads(out)
    assert card["kind"] == "onnx" and card["reference"]["std"] == 0.05 and card["levels"]
    code, out, err = run_cli("model-info", "--model", "authors-resnet50", "--format", "json")  # IIPA_HOME is empty
    assert code == 0, err
    card = json.loads(out)
    assert card["cached"] is False and card["reference"]["mean"] == 2.96
    assert card["levels"][2]["from"] == pytest.approx(2.96 - 0.5 * 1.55)
    code, _, err = run_cli("model-info", "no-such-model")
    assert code == 2 and "authors-resnet50" in err


@pytest.mark.parametrize("command", ["explain", "rank", "export", "model-info"])
def test_every_new_command_has_help(run_cli, command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0 and "examples:" in out
