"""One model card: the CLI's card and the HTTP API's card say the same things."""

from __future__ import annotations

from iipa import PopularityNet
from iipa.modelcard import SCORE_MEANING, card_for_model, public_card


def test_public_card_is_the_model_card_in_api_field_names():
    model = PopularityNet("tiny", reference={"mean": 1.0, "std": 2.0}, info={"source": "/srv/secret/m.pt"})
    card, api = card_for_model(model), public_card(model, name="m.pt")
    assert api["score_meaning"] == card["score_meaning"] == SCORE_MEANING
    assert api["scaled_meaning"] == card["scaled"] and api["reference"] == card["reference"]
    assert [(b["name"], b["min_score"], b["max_score"]) for b in api["levels"]] == \
        [(b["level"], b["from"], b["to"]) for b in card["levels"]]
    assert api["level_edges"] == [-2.0, 0.0, 2.0, 4.0]
    assert "/srv/secret" not in str(api)


def test_public_card_without_reference_has_open_bands():
    api = public_card(PopularityNet("tiny"), name="x")
    assert api["level_edges"] is None and api["reference"] is None
    assert all(b["min_score"] is None and b["max_score"] is None for b in api["levels"])
