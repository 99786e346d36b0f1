"""Grad-CAM: sizes, ranges, planted regions, the pair explanation, every backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explain_models import box_mask, detector_model, planted
from iipa.backbones.popularity_net import PopularityNet, list_backbones
from iipa.explain import explain, explain_pair, gradcam, heatmap_overlay
from iipa.scoring import make_scorer

W, H = 120, 88  # not square, not the input size: mapping errors (crop offset, transpose) show
BOX = (34, 20, 58, 44)  # off-centre, inside the centre crop of the `small` and `paper` profiles


def test_detector_model_depends_on_the_square():
    model = detector_model()
    with torch.no_grad():
        x = torch.stack([model.profile(Image.fromarray(planted(W, H, BOX, v))) for v in (255, 116, 0)])
        bright, plain, dark = model(x).tolist()
    assert bright > plain + 0.01 and dark < plain - 0.01 and abs(plain) < 1e-3


@pytest.mark.parametrize(("kind", "profile"), [
    ("path", "small"), ("pil", "small"), ("array", "small"), ("array", "paper"), ("array", "authors")])
def test_heatmap_has_input_size_and_concentrates_on_planted_square(tmp_path, kind, profile):
    arr = planted(W, H, BOX, 255)
    image = {"array": arr, "pil": Image.fromarray(arr)}.get(kind)
    if kind == "path":
        image = tmp_path / "planted.png"
        Image.fromarray(arr).save(image)
    cam = gradcam(detector_model(profile), image)
    assert cam.shape == (H, W) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and cam.max() > 0.9
    inside = box_mask(W, H, BOX)
    assert cam[inside].mean() > 10 * cam[~inside].mean()
    assert cam[inside].sum() / cam.sum() > 0.6  # the box is 7% of the image
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert inside[peak]


def test_outside_the_centre_crop_is_zero():
    """The model never sees the left and right edges of a landscape photo: no heat there."""
    edge = (0, 30, 12, 54)  # the `small` crop starts at x ≈ 20.8
    img = planted(W, H, BOX, 255)
    img[edge[1]:edge[3], edge[0]:edge[2]] = 255
    cam = gradcam(detector_model(), img)
    assert cam[box_mask(W, H, edge)].max() == 0.0
    assert cam[box_mask(W, H, BOX)].mean() > 0.3


def test_heatmap_follows_the_square_when_it_moves():
    box2 = (70, 40, 94, 64)
    cam = gradcam(detector_model(), planted(W, H, box2, 255))
    assert cam[box_mask(W, H, box2)].mean() > 10 * cam[box_mask(W, H, BOX)].mean() + 1e-6


def test_overlay_is_rgb_of_original_size_and_warm_on_the_square():
    arr = planted(W, H, BOX, 255)
    out = heatmap_overlay(detector_model(), arr, alpha=0.6)
    assert out.mode == "RGB" and out.size == (W, H)
    rgb = np.asarray(out).astype(int)
    inside = box_mask(W, H, BOX)
    # jet: hot = red; cold = blue. Inside is bright + red, outside grey + blue.
    assert rgb[inside][:, 0].mean() > rgb[~inside][:, 0].mean() + 60
    assert rgb[~inside][:, 2].mean() > rgb[~inside][:, 0].mean()


def test_explain_returns_the_scorers_score():
    model = detector_model()
    e = explain(make_scorer(model, device="cpu", precision="fp32", num_workers=0), planted(W, H, BOX, 255))
    with torch.no_grad():
        expected = model(model.profile(Image.fromarray(planted(W, H, BOX, 255)))[None]).item()
    assert e.score == pytest.approx(expected, abs=1e-5)
    assert e.heatmap.shape == (H, W)
    # A bare model is explained with the Scorer's default precision: the score `iipa score` prints.
    default = make_scorer(model, device="cpu", num_workers=0).score(planted(W, H, BOX, 255))[0]
    assert explain(model, planted(W, H, BOX, 255)).score == pytest.approx(default, abs=1e-6)


def test_pair_explanation_shows_what_drives_the_difference():
    """A has a bright square (raises f(A)), B a dark one (lowers f(B)); both drive f(A) - f(B)."""
    box_b = (66, 30, 92, 56)
    a, b = planted(W, H, BOX, 255, seed=1), planted(W, H, box_b, 0, seed=2)
    model = detector_model()
    pair = explain_pair(model, a, b)
    assert pair.difference > 0.01
    assert pair.a.heatmap.shape == pair.b.heatmap.shape == (H, W)
    in_a, in_b = box_mask(W, H, BOX), box_mask(W, H, box_b)
    assert pair.a.heatmap[in_a].mean() > 10 * pair.a.heatmap[~in_a].mean()
    assert pair.b.heatmap[in_b].mean() > 10 * pair.b.heatmap[~in_b].mean()
    # On its own, B's score is explained by nothing: the dark square only lowers it.
    assert gradcam(model, b)[in_b].mean() < 0.05
    swapped = explain_pair(model, b, a)
    assert swapped.difference == pytest.approx(-pair.difference, abs=1e-6)


@pytest.mark.parametrize("frozen", [False, True])
def test_gradcam_leaves_the_model_as_it_was(frozen):
    """Mid-training use must not change mode, requires_grad or accumulated gradients."""
    model = detector_model()
    model.head.weight.grad = torch.full_like(model.head.weight, 7.0)
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    model.train()
    cam = gradcam(model, planted(W, H, BOX, 255))
    assert model.training and cam.max() > 0.9
    assert all(p.requires_grad != frozen for p in model.parameters())
    assert torch.equal(model.head.weight.grad, torch.full_like(model.head.weight, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "net.fc.weight")


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in list_backbones() if a != "tiny"])
def test_every_backbone_gives_a_heatmap_of_the_original_size(arch):
    # The `small` profile keeps the big backbones quick; the CAM layer and the mapping back are
    # what is under test here. Random weights: the CAM may be anything in [0, 1], not NaN.
    torch.manual_seed(0)
    model = PopularityNet(arch, profile="small" if arch != "efficientnet_lite0" else None)
    cam = gradcam(model, planted(W, H, BOX, 255))
    assert cam.shape == (H, W) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
