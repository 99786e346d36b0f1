"""The Python API: load_model + make_scorer over paths, PIL images, arrays and bytes."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import iipa
from iipa.backends.device import cpu_supports_bf16, resolve_precision


@pytest.fixture(scope="module")
def scorer(tiny_checkpoint):
    return iipa.make_scorer(iipa.load_model(tiny_checkpoint), num_workers=0, precision="fp32")


def test_same_image_scores_the_same_whatever_the_input_type(scorer, photo_dir, photos):
    path = photo_dir / "chelsea.jpg"
    pil = Image.open(path)
    raw = path.read_bytes()
    arr = np.asarray(pil.convert("RGB"))
    scores = scorer.score([path, str(path), pil, arr, raw])
    assert all(abs(s - scores[0]) < 1e-5 for s in scores), scores
    assert scorer.score(path) == pytest.approx(scores[:1], abs=1e-5)


def test_errors_raise_or_become_nan(scorer, photo_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(iipa.IIPAError, match="1 of 2 inputs could not be scored.*bad.jpg: not an image"):
        scorer.score([photo_dir / "coffee.jpg", bad])
    out = scorer.score([photo_dir / "coffee.jpg", bad], on_error="nan")
    assert not math.isnan(out[0]) and math.isnan(out[1])


def test_iter_scores_keeps_order_and_reports_failures(scorer, photo_dir, tmp_path):
    items = [photo_dir / "coffee.jpg", tmp_path / "missing.png", photo_dir / "rocket.jpg"] * 15
    results = list(scorer.iter_scores(items))
    assert [r.source for r in results] == [str(p) for p in items]
    assert [r.ok for r in results[:3]] == [True, False, True]
    assert results[1].error == "not found"


def test_scores_are_deterministic_and_distinguish_images(scorer, photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))
    a, b = scorer.score(paths), scorer.score(paths)
    assert a == b
    assert len({round(s, 6) for s in a}) == len(paths)


def test_bf16_ranks_like_fp32(tiny_checkpoint, photo_dir):
    model = iipa.load_model(tiny_checkpoint)
    paths = sorted(photo_dir.glob("*.jpg"))
    fp32 = iipa.make_scorer(model, precision="fp32", num_workers=0).score(paths)
    bf16 = iipa.make_scorer(model, precision="bf16", num_workers=0).score(paths)
    assert np.argsort(fp32).tolist() == np.argsort(bf16).tolist()
    assert np.abs(np.array(fp32) - np.array(bf16)).max() < 0.05 * (np.ptp(fp32) + 1e-3) + 1e-2


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_supports_bf16() else None)
    with pytest.raises(iipa.IIPAError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cpu)


def test_scaled_and_level_follow_the_reference(tiny_checkpoint, photo_dir):
    model = iipa.load_model(tiny_checkpoint)
    model.reference = {"mean": 0.0, "std": 1e-9, "source": "test"}
    for r in iipa.make_scorer(model, num_workers=0).iter_scores(sorted(photo_dir.glob("*.jpg"))):
        assert r.level == ("excellent" if r.score > 0 else "poor")
    model.reference = None
    r = next(iter(iipa.make_scorer(model, num_workers=0).iter_scores([photo_dir / "coffee.jpg"])))
    assert r.score is not None and r.scaled is None and r.level is None


def test_readme_example_runs(tmp_path, photos):
    """The README's API example, with a fresh tiny model in place of a trained checkpoint."""
    net = iipa.PopularityNet("tiny")
    iipa.save_checkpoint(net, tmp_path / "model.pt")
    buf = io.BytesIO()
    Image.fromarray(photos["rocket"]).save(buf, "JPEG")
    scorer = iipa.make_scorer(iipa.load_model(tmp_path / "model.pt"), batch_size=32)
    assert len(scorer.score([buf.getvalue(), Image.fromarray(photos["coffee"])])) == 2


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
def test_jit_optimized_scores_match_eager(arch, photo_dir, tmp_path):
    torch.manual_seed(0)
    path = iipa.save_checkpoint(iipa.PopularityNet(arch), tmp_path / "m.pt")
    paths = sorted(photo_dir.glob("*.jpg"))
    eager = iipa.make_scorer(path, precision="fp32", num_workers=0).score(paths)
    jit = iipa.make_scorer(path, precision="fp32", num_workers=0, optimize="jit").score(paths)
    assert np.abs(np.array(eager) - np.array(jit)).max() < 1e-4
    bf16 = iipa.make_scorer(path, precision="bf16", num_workers=0, optimize="jit").score(paths)
    assert np.argsort(bf16).tolist() == np.argsort(eager).tolist()
    with pytest.raises(iipa.IIPAError, match="unknown --optimize"):
        iipa.make_scorer(path, optimize="fast")


def test_make_scorer_passes_a_scorer_through(tiny_checkpoint):
    scorer = iipa.make_scorer(iipa.load_model(tiny_checkpoint), num_workers=0, precision="fp32")
    assert iipa.make_scorer(scorer) is scorer
    record = iipa.resolve_model(tiny_checkpoint)
    assert iipa.resolve_model(record) is record  # the same rule one layer down
