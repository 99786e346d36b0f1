"""`iipa score` reproduces the torchvision pipelines it claims to, within 1e-4."""

import dataclasses
import json

import pytest
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

from iipa.profiles import Profile, get_profile

SIZES = [(300, 200), (123, 457), (224, 224), (640, 480)]


@pytest.fixture(scope="module")
def authors_model(tmp_path_factory):
    torch.manual_seed(2)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Linear(in_features=2048, out_features=1)
    path = tmp_path_factory.mktemp("authors") / "model-resnet50.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos):
    d = tmp_path_factory.mktemp("parity")
    names = list(photos)
    for i, size in enumerate(SIZES):
        img = Image.fromarray(photos[names[i % len(names)]]).resize(size)
        img.save(d / f"img{i}.png")
        img.save(d / f"img{i}.jpg", quality=92)
    return d


def _reference_scores(model, paths):
    # The authors' released test.py, verbatim in substance.
    transform = T.Compose([T.Resize([224, 224]), T.ToTensor()])
    out = []
    for p in paths:
        image = Image.open(p)
        if image.mode != "RGB":
            image = image.convert("RGB")
        with torch.no_grad():
            out.append(model(transform(image).unsqueeze(0)).item())
    return out


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_authors_checkpoint_matches_reference_pipeline_with_default_flags(run_cli, authors_model, images, ext):
    model, path = authors_model
    paths = sorted(images.glob(f"*.{ext}"))
    code, out, err = run_cli("score", *paths, "--model", path, "-f", "json")
    assert code == 0, err
    ours = {r["path"]: r["score"] for r in json.loads(out)}
    ref = _reference_scores(model, paths)
    diffs = [abs(ours[str(p)] - r) for p, r in zip(paths, ref, strict=True)]
    assert max(diffs) < 1e-4, diffs


def test_paper_profile_equals_torchvision_transforms(images):
    tv = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    profile = get_profile("paper")
    for p in sorted(images.glob("*.png")):
        img = Image.open(p).convert("RGB")
        assert torch.allclose(profile(img), tv(img), atol=1e-6), p.name


def test_authors_profile_equals_torchvision_transforms(images):
    tv = T.Compose([T.Resize([224, 224]), T.ToTensor()])
    profile = get_profile("authors")
    for p in sorted(images.glob("*.png")):
        img = Image.open(p).convert("RGB")
        assert torch.equal(profile(img), tv(img)), p.name


def test_draft_decoding_is_a_profile_property_that_travels_with_the_checkpoint(images, tmp_path):
    from iipa import PopularityNet, load_model, make_scorer, save_checkpoint

    big = images / "big.jpg"
    Image.open(images / "img3.png").resize((1600, 1200)).save(big, quality=92)
    exact = get_profile("small")
    draft = dataclasses.replace(exact, decode="draft")
    assert exact.decode == "exact" and all(get_profile(n).decode == "exact" for n in ("authors", "paper"))
    # Draft decoding gives other pixels (that is why only a model trained with it may use it) ...
    assert not torch.equal(exact.prepare(big), draft.prepare(big))
    assert torch.equal(draft.prepare(big), draft.prepare(big.read_bytes()))
    # ... and the checkpoint keeps the mode, so scoring decodes as training did.
    torch.manual_seed(0)
    ckpt = save_checkpoint(PopularityNet("tiny", profile=draft), tmp_path / "draft.pt")
    assert load_model(ckpt).profile.decode == "draft"
    scorer = make_scorer(ckpt, precision="fp32", num_workers=0)
    expected = float(scorer.score_array(draft.prepare(big).permute(1, 2, 0).numpy()[None])[0])
    assert scorer.score(big)[0] == pytest.approx(expected, abs=1e-6)
    assert Profile.from_dict({k: v for k, v in exact.to_dict().items() if k != "decode"}).decode == "exact"
