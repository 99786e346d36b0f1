"""Posts to model in one command: pairs built inside, checkpoint with its card, ONNX companion."""

from __future__ import annotations

import json

import pytest

from iipa.modelcard import model_card


@pytest.fixture(scope="module")
def crawl(sim_crawl):
    return sim_crawl


def test_one_command_from_posts_to_a_scorable_model_with_card_and_onnx(crawl, tmp_path, run_cli):
    posts, images = crawl
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", "--posts", posts, "--images", images, "--out", out, "--backbone", "tiny",
                                "--pretrained", "none", "--profile", "small", "--domain", "simulated", "--no-progress")
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
