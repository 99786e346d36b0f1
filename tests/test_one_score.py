"""One score per image, whatever the entry point: the same files through the Python API (path,
bytes, PIL image, array), `iipa score`, `rank`, `explain`, evaluate's scorer, the service,
the study analysis, the trainer's validation and onnxruntime agree within 1e-4 in fp32."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from _formats import save_format_variants
from _pairsynth import make_pair_set
from iipa import PopularityNet, make_scorer, save_checkpoint

TOL = 1e-4


@pytest.fixture(scope="module", params=["small", "authors"])
def checkpoint(request, tmp_path_factory):
    """A tiny model with a centre-cropping profile and one with the authors' stretch profile."""
    torch.manual_seed(3)
    model = PopularityNet("tiny", profile=request.param, reference={"mean": 0.0, "std": 0.05, "source": "test"})
    return save_checkpoint(model, tmp_path_factory.mktemp("one-score") / f"{request.param}.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos):
    """JPEG, PNG, EXIF-rotated JPEG, CMYK JPEG, a 16 MP JPEG and a 7x5 PNG."""
    d = tmp_path_factory.mktemp("one-score-images")
    chelsea, _, rocket = save_format_variants(d, photos)
    chelsea.resize((4608, 3456), Image.BILINEAR).save(d / "huge.jpg", quality=85)
    rocket.resize((7, 5), Image.BILINEAR).save(d / "tiny.png")
    return sorted(d.iterdir())


@pytest.fixture(scope="module")
def reference(checkpoint, images):
    return np.array(make_scorer(checkpoint, precision="fp32", device="cpu", num_workers=0).score(images))


def _close(got, expected):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL, np.abs(got - expected)


def _upright_array(path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def test_python_api_any_input_type(checkpoint, images, reference):
    scorer = make_scorer(checkpoint, precision="fp32", num_workers=2)
    _close(scorer.score([str(p) for p in images]), reference)
    _close(scorer.score([p.read_bytes() for p in images]), reference)
    _close(scorer.score([Image.open(p) for p in images]), reference)
    _close(scorer.score([_upright_array(p) for p in images]), reference)
    _close(scorer.score([io.BytesIO(p.read_bytes()) for p in images]), reference)
    rotated = next(p for p in images if p.name == "rotated.jpg")
    assert _upright_array(rotated).shape[0] > _upright_array(rotated).shape[1]  # the rotation was applied


def test_score_rank_and_explain_commands(run_cli, checkpoint, images, reference, tmp_path):
    code, out, err = run_cli("score", *images, "--model", checkpoint, "--precision", "fp32", "-f", "json")
    assert code == 0, err
    _close([r["score"] for r in json.loads(out)], reference)
    code, out, err = run_cli("rank", *images, "--model", checkpoint, "--precision", "fp32", "-f", "json")
    assert code == 0, err
    by_path = {r["path"]: r["score"] for r in json.loads(out)}
    _close([by_path[str(p)] for p in images], reference)
    code, out, err = run_cli("explain", *images, "--model", checkpoint, "--precision", "fp32", "--out",
                             tmp_path / "cams", "-f", "json")
    assert code == 0, err
    _close([r["score"] for r in json.loads(out)], reference)


def test_evaluate_study_and_trainer_validation(checkpoint, images, reference, tmp_path):
    import pandas as pd

    from iipa.evaluate import score_paths
    from iipa.model.record import load_model
    from iipa.study.analysis import model_scores
    from iipa.train import TrainConfig, Trainer

    paths = [str(p) for p in images]
    _close(score_paths(checkpoint, paths, precision="fp32"), reference)
    pairs = pd.DataFrame({"high_id": [f"h{i}" for i in range(3)], "high_path": paths[:3],
                          "low_id": [f"l{i}" for i in range(3)], "low_path": paths[3:]})
    scores = model_scores(pairs, checkpoint, device="cpu", precision="fp32")
    _close([scores[k] for k in ("h0", "h1", "h2", "l0", "l1", "l2")], reference)
    pair_file, image_dir = make_pair_set(tmp_path / "pairs", n_train=4, n_val=2, n_test=2, size=76)
    trainer = Trainer(TrainConfig(recipe="paper", pairs=str(pair_file), images=str(image_dir), out=str(tmp_path / "run"),
                                  backbone="tiny", pretrained="none", precision="fp32", workers=0, progress=False))
    trainer.model = load_model(checkpoint)
    _close(trainer._score(paths), reference)


def test_service(checkpoint, images, reference):
    from fastapi.testclient import TestClient

    from iipa.serve import create_app

    with TestClient(create_app(checkpoint, device="cpu", precision="fp32")) as client:
        got = []
        for p in images:
            resp = client.post("/v1/score", files=[("files", (p.name, p.read_bytes()))])
            assert resp.status_code == 200, resp.text
            got.append(resp.json()["results"][0]["score"])
    _close(got, reference)


def test_onnx_runtime(checkpoint, images, reference, tmp_path):
    from iipa.model.export import export_onnx
    from iipa.model.record import load_model

    path = export_onnx(load_model(checkpoint), tmp_path / "model.onnx")
    _close(make_scorer(path, num_workers=0).score(images), reference)


def test_multi_crop_is_the_mean_of_the_views(checkpoint, images):
    from iipa.model.record import load_model

    model = load_model(checkpoint)
    scorer = make_scorer(model, precision="fp32", crops=10, num_workers=0)
    views = model.profile.view_array(images[0], 10)
    expected = float(make_scorer(model, precision="fp32", num_workers=0).score_array(views).mean())
    assert scorer.score(images[0])[0] == pytest.approx(expected, abs=TOL)
    assert len(views) == (10 if model.profile.crop else 2)
