"""One model card: the CLI's card and the HTTP API's card say the same things, from the record."""

from __future__ import annotations

from iipa import PopularityNet, resolve_model, save_checkpoint
from iipa.modelcard import SCORE_MEANING, format_card, model_card, public_card


def test_public_card_is_the_model_card_in_api_field_names():
    model = PopularityNet("tiny", reference={"mean": 1.0, "std": 2.0}, info={"source": "/srv/secret/m.pt"})
    card, api = model_card(model), public_card(resolve_model(model))
    assert api["score_meaning"] == card["score_meaning"] == SCORE_MEANING
    assert api["scaled_meaning"] == card["scaled"] and api["reference"] == card["reference"]
    assert [(b["name"], b["min_score"], b["max_score"]) for b in api["levels"]] == \
        [(b["level"], b["from"], b["to"]) for b in card["levels"]]
    assert api["level_edges"] == [-2.0, 0.0, 2.0, 4.0]
    assert api["weights"] == "m.pt" and "/srv/secret" not in str(api)


def test_public_card_without_reference_has_open_bands():
    api = public_card(resolve_model(PopularityNet("tiny")))
    assert api["level_edges"] is None and api["reference"] is None
    assert all(b["min_score"] is None and b["max_score"] is None for b in api["levels"])


def test_card_of_a_file_carries_views_calibration_and_backends(tmp_path):
    model = PopularityNet("tiny", profile="small", info={"calibration": {"T": 0.9, "fitted_on": "val", "n": 40}})
    path = save_checkpoint(model, tmp_path / "m.pt")
    card = model_card(str(path))
    assert card["kind"] == "iipa checkpoint" and card["backends"] == ["torch"] and card["crops"] == 1
    assert card["calibration"] == {"T": 0.9, "fitted_on": "val", "n": 40}
    text = format_card(card)
    assert "backends   torch" in text and "calibrated T=0.9" in text
