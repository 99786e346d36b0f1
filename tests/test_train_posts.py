"""Posts to model in one command: pairs built inside, checkpoint with its card, ONNX companion."""

from __future__ import annotations

import json

from iipa.modelcard import model_card


def test_one_command_from_posts_to_a_scorable_model_with_card_and_onnx(sim_crawl, sim_trained_run, run_cli):
    """The run is conftest's ``sim_trained_run`` (`iipa train --posts ...`, trained once per session)."""
    _, images = sim_crawl
    code, stdout, err, out = sim_trained_run.code, sim_trained_run.stdout, sim_trained_run.stderr, sim_trained_run.out
    assert code == 0, err
    assert (out / "pairs" / "pairs.parquet").is_file() and "built" in err and "paper's rules" in err
    summary = json.loads(stdout)
    assert summary["data"]["train_users"] > 0 and summary["data"]["train_pairs"] > 0
    card = model_card(str(out / "best.pt"))
    assert "accounts" in card["training_data"]["source"] and card["training_data"]["training_pairs"] > 0
    assert "unseen_accounts" in card["validation"] and card["limits"]
    assert f"score with: iipa score --model {out / 'best.pt'}" in err
    photo = next(images.glob("*.jpg"))
    for model in (out / "best.pt", out / "best.onnx"):
        code, scored, err = run_cli("score", photo, "--model", model)
        assert code == 0 and photo.stem in scored, err
