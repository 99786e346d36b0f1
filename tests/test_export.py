"""ONNX export: metadata, dynamic batch, parity with PyTorch, `iipa score --runtime onnx`."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from iipa.backbones.popularity_net import PopularityNet
from iipa.backends.onnxrt import open_session
from iipa.model.export import export_onnx, onnx_parity
from iipa.model.onnx_format import JSON_KEYS, TEXT_KEYS, metadata_props, read_onnx_metadata
from iipa.model.record import load_model
from iipa.scoring import make_scorer


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_checkpoint):
    return export_onnx(load_model(tiny_checkpoint), tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_metadata_round_trips(tiny_onnx, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    meta = read_onnx_metadata(tiny_onnx)
    assert meta["arch"] == "tiny"
    assert meta["profile"] == model.profile
    assert meta["reference"] == model.reference


def test_metadata_keys_come_from_one_table(tiny_onnx):
    """The export writes exactly the table's keys, and nothing outside the table can be written."""
    import onnx

    keys = [p.key for p in onnx.load(str(tiny_onnx), load_external_data=False).metadata_props]
    assert sorted(keys) == sorted([*TEXT_KEYS.values(), *JSON_KEYS.values()])
    with pytest.raises(ValueError, match="calibration"):
        metadata_props({"arch": "tiny", "calibration": {"T": 1.0}})


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch_and_parity_with_pytorch(tiny_onnx, tiny_checkpoint, batch):
    model = load_model(tiny_checkpoint)
    session = open_session(tiny_onnx)
    x = torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(model.profile.normalize(x)).numpy()
    got = session.run(None, {"image": x.numpy()})[0].reshape(-1)
    assert got.shape == (batch,)
    assert np.abs(got - expected).max() < 1e-3
    assert np.std(expected) > 0 or batch == 1  # the inputs do move the score


@pytest.mark.slow
def test_parity_resnet18():
    torch.manual_seed(0)
    model = PopularityNet("resnet18", profile="small", reference={"mean": 0.0, "std": 1.0})
    # Make the random net's scores vary visibly, so parity is not trivially met by near-zeros.
    with torch.no_grad():
        model.head.weight.mul_(10)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(model, f"{d}/r18.onnx")
        assert onnx_parity(model, path, batch=4) < 1e-3


def test_onnx_scorer_matches_torch_scorer_on_photos(tiny_onnx, tiny_checkpoint, photo_dir):
    paths = sorted(str(p) for p in photo_dir.glob("*.jpg")) + [str(photo_dir / "missing.jpg")]
    torch_results = list(make_scorer(tiny_checkpoint, precision="fp32", num_workers=0).iter_scores(paths))
    onnx_results = list(make_scorer(tiny_onnx, num_workers=0).iter_scores(paths))
    assert [r.source for r in onnx_results] == paths
    for t, o in zip(torch_results, onnx_results, strict=True):
        assert (t.error is None) == (o.error is None)
        if t.ok:
            assert abs(t.score - o.score) < 1e-3 and t.level == o.level
    assert onnx_results[-1].error == "not found"


def test_cli_export_and_score_with_onnx_runtime(run_cli, tmp_path, tiny_checkpoint, photo_dir):
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli("export", "--model", tiny_checkpoint, "--output", out, "--check")
    assert code == 0, err
    assert out.is_file() and "max |delta|" in stdout
    code, stdout, err = run_cli("score", photo_dir, "--model", out, "--runtime", "onnx", "--format", "csv", "--workers", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 4 and all(r["level"] for r in rows)
    code, ref, _ = run_cli("score", photo_dir, "--model", tiny_checkpoint, "--precision", "fp32", "--format", "csv", "--workers", "0")
    expected = {r["path"]: float(r["score"]) for r in csv.DictReader(io.StringIO(ref))}
    assert all(abs(float(r["score"]) - expected[r["path"]]) < 1e-3 for r in rows)


def test_cli_onnx_runtime_refuses_a_checkpoint(run_cli, tiny_checkpoint, photo_dir):
    code, _, err = run_cli("score", photo_dir, "--model", tiny_checkpoint, "--runtime", "onnx")
    assert code == 2 and "iipa export" in err


def test_not_an_onnx_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    from iipa.errors import IIPAError
    with pytest.raises(IIPAError, match="bad.onnx"):
        read_onnx_metadata(bad)
