"""One model card: the CLI's card and the HTTP API's card say the same things, from the record."""

from __future__ import annotations

import dataclasses
import re

from iipa import PopularityNet, resolve_model, save_checkpoint
from iipa.cardtext import SECTIONS
from iipa.model.weights import DEFAULT_MODEL
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
    assert "| backends | torch |" in text and "## Calibration" in text and "| temperature T | 0.9 |" in text


REPRS = ("{'", "['", "=[", "={", "': ", "None", "True", "False")


def _sections(text: str) -> list[str]:
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def test_card_text_is_sections_and_tables_without_reprs_and_json_holds_each_section(tmp_path):
    info = {
        "config": {"recipe": "default", "epochs": 10, "probe_l2": 1.0, "hflip": False, "extra": {},
                   "decode": "draft", "fast_decode": False},
        "metrics": {"probe": {"l2": 1.0, "select_accuracy": None}, "seconds": 367.7},
        "data": {"train_users": 40, "train_images": 300, "train_pairs": 1234, "val_users": 0,
                 "train_source": "every within-user pair with P >= 0.5 and at most 10.0 days apart "
                                 "of the 44 accounts of posts.csv outside validation and test",
                 "dropped_missing_images": {"train": 0, "val": 0}},
        "calibration": {"T": 3.2, "fitted_on": "5-fold CV by account", "n": 1041, "ece_before": 0.132,
                        "ece_after": 0.041, "log_loss_before": 0.66, "log_loss_after": 0.61},
        "validation": {"metric": "pairwise accuracy", "unseen_accounts": {
            "accuracy": 0.6964, "ci95": [0.6678, 0.7236], "pairs": 1041, "per_fold": [[0.7, 0.69], [0.71, 0.68]]}},
        "baselines": [{"method": "chance", "accuracy": 0.5, "source": "a coin toss per pair"}],
        "limits": ["sees only pixels"],
    }
    model = PopularityNet("tiny", profile="small", reference={"mean": 0.0, "std": 1.0}, info=info)
    model.profile = dataclasses.replace(model.profile, decode="draft")
    card = model_card(save_checkpoint(model, tmp_path / "m.pt"))
    text = format_card(card)
    assert not [r for r in REPRS if r in text], text
    assert _sections(text) == ["Model", "Preprocessing", "What the score means", "Calibration", "Training data",
                               "Accuracy", "Baselines", "Limits", "Training config", "Training metrics"]
    assert all(SECTIONS[s] in card for s in _sections(text))
    assert "| expected calibration error | 0.132 | 0.041 |" in text and "| log-loss | 0.66 | 0.61 |" in text
    assert "| unseen accounts | 0.696 | 0.668–0.724 | 1,041 |" in text and "| training pairs | 1,234 |" in text
    # one count per concept: the accounts with training pairs; the pool the pairs came from is named apart
    assert card["training_data"]["training_accounts"] == 40 and "training users" not in text
    assert "of the 44 accounts of posts.csv outside validation and test" in text
    # decoding is stated once, by the profile; the config's copies are left out
    assert card["decode"] == "draft" and "decode" not in card["training"]["config"]
    assert text.count("draft") == 1 and "fast decode" not in text


def test_named_weights_cards_read_without_reprs(monkeypatch, tmp_path):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path))  # the authors' weights are not downloaded for a card
    text = format_card(model_card("authors-resnet50"))
    assert not [r for r in REPRS if r in text], text
    assert "| normalisation | none (pixels in [0, 1]) |" in text and "| resize | stretch 224 |" in text


def test_shipped_card_names_a_real_source_for_every_baseline():
    card = model_card(DEFAULT_MODEL)
    text = format_card(card)
    assert not [r for r in REPRS if r in text]
    sources = [b["source"] for b in card["baselines"]]
    assert sources and all(re.search(r"paper §\d|benchmarks/\w+\.py|coin toss", s) for s in sources), sources
    assert not re.search(r"issue \d+", text)
    training = text.split("## Training data")[1].split("## ")[0]
    assert training.count("accounts |") == 1 and "users" not in training
    assert text.count("| decoding |") == 1 and "fast decode" not in text


def test_limits_are_a_list_when_written_and_an_old_string_reads_as_one_bullet(tmp_path):
    import pytest
    import torch

    from iipa.model.cardschema import CardError

    model = PopularityNet("tiny", info={"limits": "Trained on one crawl. Accuracy elsewhere is unknown."})
    with pytest.raises(CardError, match="'limits' must be a list"):
        save_checkpoint(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    # a file written before the schema (its info saved as is) still reads as one limit
    model.info = {}
    path = save_checkpoint(model, tmp_path / "old.pt")
    old = torch.load(path, weights_only=True)
    old["info"]["limits"] = "Trained on one crawl. Accuracy elsewhere is unknown."
    torch.save(old, path)
    card = model_card(str(path))
    assert card["limits"] == ["Trained on one crawl. Accuracy elsewhere is unknown."]
    assert format_card(card).split("## Limits")[1].strip().splitlines()[0] == \
        "- Trained on one crawl. Accuracy elsewhere is unknown."


def test_named_card_is_declared_with_its_entry_and_packaging_writes_none_of_it(tmp_path, monkeypatch):
    """The shipped card's facts come from the declaration beside the weights entry, the
    baselines once; a packaged file carries the trainer's facts only and no local path."""
    import torch

    from iipa.model import named_cards, weights
    from iipa.model.cardschema import CARD_FIELDS, CardFacts
    from iipa.packaging import package_weights

    card = model_card(DEFAULT_MODEL)
    declared = weights.get_weights(DEFAULT_MODEL).card
    assert card["baselines"] == [dict(b) for b in named_cards.LITE0_BASELINES] == declared.as_dict()["baselines"]
    assert card["limits"] == list(declared.limits) and card["validation"] == dict(declared.validation)
    assert "baselines" not in weights.get_weights(DEFAULT_MODEL).meta
    monkeypatch.setattr(weights, "_WEIGHTS", weights.Registry("weights"))  # a throwaway registry
    weights.register_weights(weights.NamedWeights(
        name="tiny-card", filename="tiny-card.pt", url="", arch="tiny", profile="small", domain="simulated",
        card=CardFacts(training_data={"source": "rendered shapes"}, limits=("only shapes",))))
    run = tmp_path / "secret-run"
    model = PopularityNet("tiny", profile="small", info={
        "config": {"pairs": str(run / "pairs.parquet"), "images": str(run / "img"), "out": str(run), "seed": 0},
        "metrics": {"seconds": 1.0}, "limits": ["stale copy"],
        "baselines": [{"method": "old", "accuracy": 0.1, "source": "old"}]})
    out = package_weights(save_checkpoint(model, run / "best.pt"), "tiny-card", tmp_path / "shipped.pt")
    info = torch.load(out, weights_only=True)["info"]
    assert not set(CARD_FIELDS) & set(info) and "secret-run" not in str(info)
    assert info["config"] == {"seed": 0} and info["metrics"] == {"seconds": 1.0} and info["weights"] == "tiny-card"


def test_few_accounts_are_warned_about_even_with_many_pairs():
    from iipa.model.cardschema import HEADLINE, MIN_ACCOUNTS, evidence_warning

    many = {HEADLINE: {"pairs": 500, "accounts": MIN_ACCOUNTS}}
    few = {HEADLINE: {"pairs": 500, "accounts": 2}}
    assert evidence_warning(many, {"n": 1000}) is None
    assert "rests on 2 accounts" in evidence_warning(few, {"n": 1000})
