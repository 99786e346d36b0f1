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


def test_card_of_a_trained_model_reports_accounts_that_chose_nothing(sim_crawl, tmp_path, run_cli):
    """The headline is the test split's figure (with n and accounts), not the pairs that chose
    the L2; the figures that chose are labelled; few pairs or images give one warning line,
    in the card and in `iipa score`; limits are sentences, not characters."""
    from iipa.pairs.build import build_pairs

    posts, images = sim_crawl
    pairs = tmp_path / "pairs"
    build_pairs(posts, pairs, seed=0, val=0.25, test=0.25, split_by_user=True)
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", "--posts", posts, "--pairs", pairs / "pairs.parquet", "--images", images,
                                "--out", out, "--backbone", "tiny", "--pretrained", "none", "--profile", "small",
                                "--no-progress")
    assert code == 0, err
    card = model_card(str(out / "best.pt"))
    head = card["validation"]["unseen_accounts"]
    assert "test split" in head["what"] and 0 < head["pairs"] and head["accounts"] > 0
    summary = json.loads(stdout)
    assert summary["data"]["test_pairs"] == head["pairs"] and summary["test_accuracy"] == head["accuracy"]
    assert "optimistic" in card["validation"]["selection_accounts"]["note"]
    assert all(len(limit) > 20 for limit in card["limits"])  # sentences, not one character per bullet
    code, text, _ = run_cli("model-info", out / "best.pt")
    assert code == 0
    bullets = text.split("## Limits")[1].split("##")[0].strip().splitlines()
    assert len(bullets) == len(card["limits"]) and all(len(b) > 20 for b in bullets)
    lines = text.splitlines()
    assert lines[2] == f"> Warning: {card['warning']}." and f"rests on {head['pairs']} pairs" in lines[2]
    assert text.index("| unseen accounts |") < text.index("| selection accounts |")
    photo = next(images.glob("*.jpg"))
    code, _, err = run_cli("score", photo, "--model", out / "best.onnx")
    warnings = [line for line in err.splitlines() if "few data" in line]
    assert code == 0 and len(warnings) == 1 and f"rests on {head['pairs']} pairs" in warnings[0]
