import math

import pytest
import torch
from torch import nn

from iipa import IIPAError, PopularityNet, get_backbone, list_backbones, register_backbone
from iipa.backbones.popularity_net import ScoreHead

PAPER_BACKBONES = {"alexnet", "vgg16", "resnet18", "resnet50", "resnet101", "efficientnet_lite0"}


def test_registry_lists_the_paper_backbones():
    assert PAPER_BACKBONES <= set(list_backbones())


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(IIPAError) as exc:
        get_backbone("resnet5O")
    for name in PAPER_BACKBONES:
        assert name in str(exc.value)


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny", head="fc", cam_layer="features", profile="small", pretrained="")(lambda **_: None)


@pytest.mark.parametrize("arch", sorted(PAPER_BACKBONES | {"tiny"}))
def test_one_score_per_image_from_every_backbone(arch):
    torch.manual_seed(0)
    model = PopularityNet(arch).eval()
    assert isinstance(model.head, ScoreHead) and model.head.out_features == 1
    size = model.profile.input_size if arch in ("alexnet", "vgg16") else 64
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2,)
    assert torch.isfinite(out).all()
    assert isinstance(model.cam_layer, nn.Module)


def test_head_is_he_initialised():
    torch.manual_seed(0)
    model = PopularityNet("resnet50")
    w = model.head.weight
    assert w.shape == (1, 2048)
    assert float(w.detach().std()) == pytest.approx(math.sqrt(2 / 2048), rel=0.1)  # He: std = sqrt(2 / fan_in)
    assert torch.all(model.head.bias == 0)


@pytest.mark.parametrize("arch", ["tiny", "efficientnet_lite0", "resnet18"])
def test_every_parameter_gets_a_gradient(arch):
    torch.manual_seed(0)
    model = PopularityNet(arch).train()
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    loss = nn.functional.binary_cross_entropy_with_logits(model(a) - model(b), torch.ones(2))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_parameter_groups_split_head_from_backbone():
    model = PopularityNet("tiny")
    head = list(model.head_parameters())
    body = list(model.backbone_parameters())
    assert len(head) == 2
    assert len(head) + len(body) == len(list(model.parameters()))


def test_score_head_stays_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = PopularityNet("tiny").eval()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32
    # bf16 output would have at most 8 significant bits; fp32 scores are (almost surely) distinct
    assert len(set(out.tolist())) == 4
