"""Posts to model in one command: pairs built inside, checkpoint with its card, ONNX companion."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from iipa.modelcard import model_card


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    from iipa.simulate import SimConfig, render_images, write_crawl

    root = tmp_path_factory.mktemp("crawl")
    files = write_crawl(root / "crawl", SimConfig(users=40, posts_per_user=12, seed=0))
    ids = pd.read_parquet(files.posts)["post_id"].astype(str).tolist()
    render_images(ids, files.truth, root / "images", size=40)
    return files.posts, root / "images"


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
    assert "training users" in card["training_data"]["source"] and card["training_data"]["training_pairs"] > 0
    assert "unseen_accounts" in card["validation"] and card["limits"]
    assert f"score with: iipa score --model {out / 'best.pt'}" in err
    photo = next(images.glob("*.jpg"))
    for model in (out / "best.pt", out / "best.onnx"):
        code, scored, err = run_cli("score", photo, "--model", model)
        assert code == 0 and photo.stem in scored, err
