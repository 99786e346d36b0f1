"""The shipped model's ONNX companion: the default CPU path runs it through onnxruntime, and
its scores equal the PyTorch weights' (|delta| <= 1e-4, the one-score rule).

If the .pt is retrained without regenerating the companion, these tests fail; regenerate with
  iipa export --model instagram-lite0 --output src/iipa/assets/weights/instagram-lite0.onnx --check
"""

from __future__ import annotations

import numpy as np
import pytest

from iipa.backends.choose import choose_runtime
from iipa.errors import IIPAError
from iipa.model.record import load_model, resolve_model
from iipa.model.weights import DEFAULT_MODEL, get_weights
from iipa.scoring import make_scorer

REGENERATE = ("the shipped ONNX export is stale: regenerate it with `iipa export --model {name} "
              "--output src/iipa/{onnx} --check`")


@pytest.fixture(scope="module")
def torch_scorer():
    return make_scorer(DEFAULT_MODEL, runtime="torch", device="cpu", num_workers=0)


@pytest.fixture(scope="module")
def onnx_scorer():
    return make_scorer(device="cpu", num_workers=0)  # no model named: the default, as `iipa.make_scorer()`


def test_default_model_ships_an_onnx_companion():
    entry = get_weights(DEFAULT_MODEL)
    assert entry.onnx_file, "the default model should ship an ONNX export for fast CPU scoring"
    path = resolve_model().onnx_file
    assert path is not None and path.as_posix().endswith(entry.onnx_file) and path.stat().st_size > 1_000_000


def test_default_cpu_fp32_scoring_runs_onnxruntime(torch_scorer, onnx_scorer):
    assert onnx_scorer.runtime == "onnx" and torch_scorer.runtime == "torch"
    assert type(onnx_scorer) is type(torch_scorer)  # one Scorer; only the backend differs
    # One record whichever backend scores, and the .pt's own profile is the export's.
    assert onnx_scorer.record == torch_scorer.record
    assert torch_scorer.torch_model().profile == onnx_scorer.profile


def test_companion_scores_real_photos_like_the_pt(torch_scorer, onnx_scorer, photos):
    """Real photos (scikit-image), as arrays and at several sizes: the two runtimes agree."""
    images = list(photos.values()) + [np.ascontiguousarray(p[::3, ::2]) for p in photos.values()]
    got = onnx_scorer.score(images)
    expected = torch_scorer.score(images)
    delta = float(np.max(np.abs(np.array(got) - np.array(expected))))
    entry = get_weights(DEFAULT_MODEL)
    assert delta <= 1e-4, f"max |delta| {delta:.2e}; " + REGENERATE.format(name=entry.name, onnx=entry.onnx_file)


def test_companion_is_fresh_on_random_inputs():
    """Random uint8 batches exercise every weight, not only what photos light up."""
    from iipa.model.export import onnx_parity

    entry = get_weights(DEFAULT_MODEL)
    delta = onnx_parity(load_model(DEFAULT_MODEL), resolve_model().onnx_file, batch=4)
    assert delta <= 1e-4, f"max |delta| {delta:.2e}; " + REGENERATE.format(name=entry.name, onnx=entry.onnx_file)


@pytest.mark.parametrize("kwargs", [dict(precision="bf16"), dict(runtime="torch"), dict(optimize="jit")])
def test_torch_when_asked_or_when_onnx_cannot_match(kwargs):
    assert choose_runtime(resolve_model(), device="cpu", **kwargs) == "torch"
    assert choose_runtime(resolve_model(), device="cpu") == "onnx"


def test_checkpoints_without_companion_stay_on_torch(tiny_checkpoint):
    record = resolve_model(tiny_checkpoint)
    assert record.backends == ("torch",) and choose_runtime(record, device="cpu") == "torch"
    with pytest.raises(IIPAError, match="iipa export"):
        choose_runtime(record, runtime="onnx")


def test_cli_score_runtimes_agree(run_cli, photo_dir):
    rows = {}
    for runtime in ("auto", "torch"):
        code, out, err = run_cli("score", photo_dir, "--runtime", runtime, "--device", "cpu", "--format", "csv",
                                 "--workers", "0")
        assert code == 0, err
        rows[runtime] = {line.split(",")[0]: float(line.split(",")[1]) for line in out.splitlines()[1:]}
    assert rows["auto"].keys() == rows["torch"].keys() and len(rows["auto"]) == 4
    assert max(abs(rows["auto"][k] - rows["torch"][k]) for k in rows["auto"]) <= 1e-4
