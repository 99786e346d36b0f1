import pytest
import torch
import torchvision

from iipa import IIPAError, PopularityNet, WeightsError, load_model, save_checkpoint
from iipa.levels import AUTHORS_REFERENCE


def test_round_trip_keeps_weights_profile_reference_and_info(tmp_path):
    torch.manual_seed(0)
    model = PopularityNet("tiny", reference={"mean": 1.0, "std": 2.0, "source": "val"},
                          info={"config": {"lr": 1e-4, "backbone": "tiny"}, "metrics": {"val_acc": 0.8}})
    path = save_checkpoint(model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)  # plain data only: no pickled classes
    assert raw["arch"] == "tiny" and raw["iipa_checkpoint"] == 1
    loaded = load_model(path)
    assert loaded.profile == model.profile
    assert loaded.reference == model.reference
    assert loaded.info["config"] == {"lr": 1e-4, "backbone": "tiny"}
    assert loaded.info["metrics"] == {"val_acc": 0.8}
    x = torch.rand(3, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def _authors_state(prefix=""):
    torch.manual_seed(1)
    tv = torchvision.models.resnet50()
    tv.fc = torch.nn.Linear(2048, 1)
    return tv, {prefix + k: v for k, v in tv.state_dict().items()}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_state_dict_loads_with_authors_profile(tmp_path, prefix):
    tv, state = _authors_state(prefix)
    torch.save(state, tmp_path / "model-resnet50.pth")
    model = load_model(tmp_path / "model-resnet50.pth")
    assert model.arch == "resnet50" and model.profile.name == "authors"
    assert model.reference == AUTHORS_REFERENCE
    x = torch.rand(1, 3, 224, 224)
    tv.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), tv(x).squeeze(-1), atol=1e-5)


def test_our_resnet50_checkpoint_has_the_authors_keys(tmp_path):
    _, state = _authors_state()
    ours = save_checkpoint(PopularityNet("resnet50"), tmp_path / "ours.pt")
    assert set(torch.load(ours, weights_only=True)["state_dict"]) == set(state)


def test_bad_checkpoints_give_weights_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"some": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="unrecognised checkpoint"):
        load_model(tmp_path / "other.pt")
    payload = torch.load(save_checkpoint(PopularityNet("tiny"), tmp_path / "t.pt"), weights_only=True)
    payload["arch"] = "resnet18"
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(WeightsError, match="do not fit architecture resnet18"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(IIPAError, match="no such file"):
        load_model(tmp_path / "absent.pt")


def test_load_model_rejects_unknown_names(tmp_path):
    with pytest.raises(Exception, match="authors-resnet50"):
        load_model("no-such-model")
