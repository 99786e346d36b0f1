"""The packaged EfficientNet-Lite0/1/2 ImageNet weights land in timm's layout correctly."""

import pytest
import torch
from PIL import Image

from iipa.backbones.lite_weights import map_lite_key
from iipa.backbones.popularity_net import PopularityNet, efficientnet_lite0
from iipa.errors import WeightsError
from iipa.profiles import get_profile


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite0(pretrained=True).eval()


def _probs(model, array):
    x = get_profile("efficientnet")(Image.fromarray(array))[None]
    with torch.no_grad():
        return model(x).softmax(-1)[0]


def test_chelsea_is_a_cat(classifier, photos):
    probs = _probs(classifier, photos["chelsea"])
    assert int(probs.argmax()) in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert float(probs[281:286].sum()) > 0.6


def test_coffee_is_espresso(classifier, photos):
    probs = _probs(classifier, photos["coffee"])
    assert int(probs.argmax()) == 967


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_load_offline_at_their_native_sizes(variant, photos):
    net = PopularityNet(f"efficientnet_lite{variant}", pretrained=True)
    assert net.profile.input_size == {1: 240, 2: 260}[variant]
    from iipa.backbones.popularity_net import get_backbone

    classifier = get_backbone(f"efficientnet_lite{variant}").build(pretrained=True).eval()
    x = net.profile(Image.fromarray(photos["chelsea"]))[None]
    with torch.no_grad():
        probs = classifier(x).softmax(-1)[0]
    assert int(probs.argmax()) in range(281, 286) and float(probs[281:286].sum()) > 0.5


def test_key_mapping_of_deeper_variants_uses_their_stage_layout():
    lite2 = (1, 3, 3, 4, 4, 5, 1)
    assert map_lite_key("_blocks.3._expand_conv.weight", lite2) == "blocks.1.2.conv_pw.weight"
    assert map_lite_key("_blocks.20._bn2.bias", lite2) == "blocks.6.0.bn3.bias"


def test_key_mapping_follows_stage_layout():
    assert map_lite_key("_conv_stem.weight") == "conv_stem.weight"
    assert map_lite_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert map_lite_key("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert map_lite_key("_blocks.3._project_conv.weight") == "blocks.2.0.conv_pwl.weight"
    assert map_lite_key("_blocks.15._bn2.running_mean") == "blocks.6.0.bn3.running_mean"
    assert map_lite_key("_fc.bias") == "classifier.bias"
    with pytest.raises(KeyError):
        map_lite_key("_blocks.2._se_reduce.weight")


def test_pretrained_popularity_net_keeps_imagenet_features(classifier):
    net = PopularityNet("efficientnet_lite0", pretrained=True)
    assert torch.equal(net.net.conv_stem.weight, classifier.conv_stem.weight)
    assert net.head.out_features == 1


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(WeightsError):
        PopularityNet("tiny", pretrained=True)


def test_torchvision_weights_offline_give_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch.hub

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(WeightsError) as exc:
        PopularityNet("resnet18", pretrained=True)
    text = str(exc.value)
    assert "resnet18" in text and str(tmp_path) in text and "--pretrained none" in text
