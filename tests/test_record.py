"""One model record: every kind of --model resolves to one frozen record, torch-free where it can."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from iipa import IIPAError, PopularityNet, WeightsError, make_scorer, resolve_model, save_checkpoint
from iipa.model.export import export_onnx
from iipa.model.onnx_format import read_onnx_metadata
from iipa.model.weights import DEFAULT_MODEL


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_checkpoint):
    return export_onnx(resolve_model(tiny_checkpoint).load_torch(), tmp_path_factory.mktemp("rec") / "tiny.onnx")


def test_each_kind_resolves_to_one_record(tiny_checkpoint, tiny_onnx):
    named, ckpt, onnx = resolve_model(), resolve_model(tiny_checkpoint), resolve_model(tiny_onnx)
    assert (named.kind, named.name, named.backends) == ("named", DEFAULT_MODEL, ("onnx", "torch"))
    assert (ckpt.kind, ckpt.backends, ckpt.onnx_file) == ("checkpoint", ("torch",), None)
    assert (onnx.kind, onnx.backends, onnx.torch_file) == ("onnx", ("onnx",), None)
    # The export carries what the checkpoint says: same arch, profile, reference, parameters.
    for field in ("arch", "profile", "reference", "parameters"):
        assert getattr(onnx, field) == getattr(ckpt, field), field
    model = ckpt.load_torch()
    memory = resolve_model(model)
    assert memory.kind == "memory" and memory.load_torch() is model and memory.profile == ckpt.profile
    assert resolve_model(named) is named  # a record is its own spec


def test_onnx_metadata_reader_agrees_with_the_onnx_package(tiny_onnx):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    ours = read_onnx_metadata(tiny_onnx)
    assert ours["profile"].to_dict() == json.loads(props["iipa.profile"])
    assert ours["reference"] == json.loads(props["iipa.reference"])
    assert ours["info"] == json.loads(props["iipa.info"]) and ours["arch"] == props["iipa.arch"]


def test_default_views_and_calibration_travel_with_the_weights(tmp_path, photos):
    torch.manual_seed(0)
    calibration = {"T": 0.8, "fitted_on": "val pairs", "n": 120}
    model = PopularityNet("tiny", profile="small", info={"calibration": calibration})
    model.profile = dataclasses.replace(model.profile, crops=5)
    path = save_checkpoint(model, tmp_path / "five.pt")
    record = resolve_model(path)
    assert record.crops == 5 and record.calibration == calibration
    onnx = resolve_model(export_onnx(record.load_torch(), tmp_path / "five.onnx"))
    assert onnx.crops == 5 and onnx.calibration == calibration
    image = photos["coffee"]
    default = make_scorer(path, num_workers=0)
    assert default.crops == 5
    five_views = record.profile.view_array(image, 5)
    assert default.score(image)[0] == pytest.approx(float(default.score_array(five_views).astype(np.float64).mean()),
                                                    abs=1e-6)
    assert make_scorer(path, crops=1, num_workers=0).crops == 1


def test_what_cannot_be_had_says_why(tmp_path, tiny_onnx, tiny_checkpoint):
    onnx = resolve_model(tiny_onnx)
    assert "no PyTorch weights" in onnx.heatmaps_unavailable()
    with pytest.raises(IIPAError, match="no PyTorch weights"):
        make_scorer(tiny_onnx, runtime="torch")
    assert resolve_model(tiny_checkpoint).heatmaps_unavailable() is None
    (tmp_path / "folder").mkdir()
    with pytest.raises(IIPAError, match="is a folder"):
        resolve_model(tmp_path / "folder")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(WeightsError, match="not a model file"):
        resolve_model(tmp_path / "notes.pt")
    with pytest.raises(IIPAError, match="no such file"):
        resolve_model(tmp_path / "gone.onnx")
    with pytest.raises(IIPAError, match=f"known: .*{DEFAULT_MODEL}"):
        resolve_model("no-such-weights")


def test_backends_give_the_same_scores(tiny_checkpoint, tiny_onnx, photo_dir):
    paths = sorted(str(p) for p in photo_dir.glob("*.jpg"))
    for crops in (1, 5):
        by_torch = make_scorer(tiny_checkpoint, crops=crops, num_workers=0).score(paths)
        by_onnx = make_scorer(tiny_onnx, crops=crops, num_workers=0).score(paths)
        assert np.abs(np.array(by_torch) - np.array(by_onnx)).max() <= 1e-4, crops


def test_default_record_card_and_scores_import_no_torch(photo_dir):
    code = (
        "import sys, json, iipa\n"
        "from iipa.modelcard import model_card\n"
        "r = iipa.resolve_model(); card = model_card(None)\n"
        f"s = iipa.make_scorer(device='cpu', num_workers=0).score([{str(photo_dir / 'coffee.jpg')!r}])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'kind': card['kind'], 'score': s[0]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and report["kind"] == "named weights" and np.isfinite(report["score"])
