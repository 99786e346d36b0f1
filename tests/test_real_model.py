"""The shipped real-photo model, the small-data recipe on real photos, and model domains."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iipa.backbones.popularity_net import PopularityNet
from iipa.model.checkpoint import save_checkpoint
from iipa.model.record import load_model, resolve_model
from iipa.model.weights import DEFAULT_MODEL, get_weights, weights_path
from iipa.modelcard import model_card
from iipa.scoring import make_scorer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "instagram-dev"


def _real_data() -> Path:
    if not (DATA / "posts.csv").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DATA} is missing: CI must have the instagram-dev data beside the clone")
        pytest.skip(f"{DATA} is missing (real-photo data beside the repository)")
    return DATA


def test_default_model_ships_inside_the_package_and_loads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path))  # an empty cache: nothing to find there
    entry = get_weights(DEFAULT_MODEL)
    path = weights_path(entry)
    assert path.is_file() and "assets" in path.parts
    assert path.stat().st_size <= 25 * 2**20
    model = load_model(download=False)
    assert model.arch.startswith("efficientnet_lite") and model.info["domain"] == "real"


def test_shipped_model_scores_a_photo_as_the_training_preprocessing_does(photos, tmp_path):
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(photos["chelsea"]).save(path, quality=92)
    model = load_model()
    profile = model.profile
    x = profile.normalize(profile.prepare(path))[None]  # the trainer's path (train/small.py)
    with torch.no_grad():
        expected = float(model(x))
    scorer = make_scorer(DEFAULT_MODEL, precision="fp32")
    (result,) = list(scorer.iter_scores([str(path)]))
    assert result.ok and result.score == pytest.approx(expected, abs=1e-4)


def test_shipped_card_says_what_it_was_trained_on_and_how_well_it_ranks():
    card = model_card(DEFAULT_MODEL)
    assert card["domain"] == "real"
    data = card["training_data"]
    assert "instagram-dev" in data["source"] and data["training_accounts"] > 100 and data["training_pairs"] > 1000
    # The estimate for unseen accounts: cross-validated by account, pooled over the folds.
    est = card["validation"]["unseen_accounts"]
    assert 0.5 < est["accuracy"] <= 1 and est["ci95"][0] < est["accuracy"] < est["ci95"][1] and est["pairs"] > 500
    assert len(est.get("per_fold") or est["per_seed"]) >= 2 and "cross-validation" in est["what"]
    # its probability is calibrated: a temperature fitted on held-out accounts, folded into the model
    assert est["ece"] < est["ece_uncalibrated"] and abs(est["mean_confidence"] - est["accuracy"]) < 0.04
    assert min(est["beats_degraded_copies"].values()) >= 0.95  # a photo beats its blurred/thumbnail/jpeg copies
    record = resolve_model(DEFAULT_MODEL)
    assert record.calibration["T"] > 1 and record.calibration["n"] > 1000 and "by account" in record.calibration["fitted_on"]
    earlier = card["validation"]["earlier_user_split_model"]  # labelled as the earlier model's
    assert "previous" in earlier["what"] and earlier["test_users"]["pairs"] > 100
    assert any("chance" in b["method"] for b in card["baselines"])
    assert any("299" in limit for limit in card["limits"])
    assert card["reference"]["std"] > 0 and card["levels"]


def _subset(tmp: Path, users: int, val: float = 0.4) -> tuple[Path, Path]:
    """Posts of the first ``users`` accounts (by name) and pairs split by user."""
    from iipa.pairs.build import build_pairs
    from iipa.pairs.rules import RuleConfig

    posts = pd.read_csv(_real_data() / "posts.csv", dtype={"post_id": str, "user_id": str})
    keep = sorted(posts["user_id"].unique())[:users]
    subset = tmp / "posts.csv"
    posts[posts["user_id"].isin(keep)].to_csv(subset, index=False)
    rules = RuleConfig(max_caption_words=1_000_000, same_hashtags=False, same_mentions=False)
    build_pairs(subset, tmp / "pairs", rules=rules, seed=0, val=val, test=0, split_by_user=True)
    return subset, tmp / "pairs" / "pairs.parquet"


def test_small_data_recipe_learns_on_real_photos_and_reports_accounts_that_chose_nothing(tmp_path):
    """A linear probe (the recipe's first stage) at 128 px on 60 accounts: on the discriminable
    within-user pairs of the validation accounts that chose the L2 the lower 95 % bound is
    > 0.5 (it learned something); the card's headline comes from the other validation accounts
    (the pairs table has no test split), which chose nothing, and the chosen figure is labelled."""
    from iipa.train import TrainConfig, train

    posts, pairs = _subset(tmp_path, 60, val=0.5)
    summary = train(TrainConfig(pairs=str(pairs), images=str(_real_data() / "images"), out=str(tmp_path / "run"),
                                posts=str(posts), profile="efficientnet-small",
                                max_val_pairs=None, progress=False))
    assert summary["data"]["train_users"] >= 25 and summary["select_pairs"] >= 100
    assert summary["select_ci95"][0] > 0.5, summary
    est = summary["estimate"]
    head, chosen = est["unseen_accounts"], est["selection_accounts"]
    assert head["pairs"] == summary["test_pairs"] > 0 and "chose nothing" in head["what"]
    assert est["unseen_accounts_within_user"]["pairs"] > 0 and "optimistic" in chosen["note"]
    assert summary["data"]["test_users"] >= 5


def test_simulated_models_say_so_and_score_warns_once(tmp_path, run_cli, photos):
    model = PopularityNet("tiny", profile="small", reference={"mean": 0.0, "std": 1.0},
                          info={"domain": "simulated"})
    ckpt = save_checkpoint(model, tmp_path / "demo.pt")
    assert model_card(str(ckpt))["domain"] == "simulated"
    for i in range(2):
        Image.fromarray(photos["coffee"]).save(tmp_path / f"p{i}.jpg")
    code, out, err = run_cli("score", tmp_path / "p0.jpg", tmp_path / "p1.jpg", "--model", ckpt)
    assert code == 0 and err.count("trained on simulated images") == 1


def test_real_models_do_not_warn(tmp_path, run_cli, photos):
    model = PopularityNet("tiny", profile="small", info={"domain": "real"})
    ckpt = save_checkpoint(model, tmp_path / "real.pt")
    Image.fromarray(photos["coffee"]).save(tmp_path / "p.jpg")
    code, _, err = run_cli("score", tmp_path / "p.jpg", "--model", ckpt)
    assert code == 0 and "simulated" not in err


def test_within_user_pairs_follow_the_rules():
    from iipa.train.allpairs import WithinUserRules, within_user_pairs

    day = 86_400 * 10**6
    posts = pd.DataFrame({"post_id": ["a", "b", "c", "d"], "user_id": ["u", "u", "u", "v"],
                          "taken_us": [0, 2 * day, 30 * day, 0], "crawled_us": [400 * day] * 4,
                          "media_type": "image", "likes": [1000, 100, 5000, 10]})
    pairs = within_user_pairs(posts, None, WithinUserRules(threshold=0.95, max_gap_days=10))
    assert list(zip(pairs["high_id"], pairs["low_id"], strict=True)) == [("a", "b")]  # c too late, d alone
    assert np.all(pairs["p"] >= 0.95)
    everything = within_user_pairs(posts, {"u"}, WithinUserRules(threshold=0.5, max_gap_days=None))
    assert len(everything) == 3


def test_default_recipe_learns_the_easy_synthetic_task(tmp_path):
    """Brighter wins: the paper recipe reached 0.74 on held-out pairs from 250 training pairs
    (issue 11); the default recipe's first stage must pass 0.9 from 120 (128 px inputs for
    speed; it reached 1.0 from 80, 120 and 250 on an AVX-512 machine)."""
    from _pairsynth import make_pair_set
    from iipa.evaluate import evaluate_pairs
    from iipa.train import TrainConfig, train

    pairs, images = make_pair_set(tmp_path / "set", n_train=120, n_val=40, n_test=60, size=64)
    summary = train(TrainConfig(pairs=str(pairs), images=str(images), out=str(tmp_path / "run"),
                                profile="efficientnet-small", progress=False))
    result = evaluate_pairs(summary["best"], pairs, images, splits=["test"], precision="fp32")
    assert result["splits"]["test"]["accuracy"] > 0.9, result


def test_multistage_head_reads_final_and_middle_stage_features():
    """``efficientnet_lite0_ms``: the head's input is [final pooled, stage 2-6 means], computed
    here independently from the timm blocks; nothing else of the network changes."""
    model = PopularityNet("efficientnet_lite0_ms", pretrained=False).eval()
    base = model.net.base
    assert model.head.in_features == 1280 + 40 + 80 + 112 + 192 + 320
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h, pools = base.bn1(base.conv_stem(x)), []
        for i, stage in enumerate(base.blocks):
            h = stage(h)
            if i >= 2:
                pools.append(h.mean((2, 3)))
        feats = torch.cat([base.bn2(base.conv_head(h)).mean((2, 3)), *pools], 1)
        expected = feats @ model.head.weight[0] + model.head.bias
        assert torch.allclose(model(x), expected, atol=1e-5)
    bn = base.blocks[3][0].bn1
    assert float(bn.num_batches_tracked) == 0  # building it ran no BN-updating pass


def test_probe_trains_on_every_account_when_there_are_no_validation_users(tmp_path):
    """The shipped model's recipe: every account in training, L2 fixed; the reference comes
    from the training images."""
    from iipa.train import TrainConfig, train

    posts, pairs = _subset(tmp_path, 12, val=0)
    common = dict(pairs=str(pairs), images=str(_real_data() / "images"), posts=str(posts),
                  profile="efficientnet-small", progress=False)
    summary = train(TrainConfig(out=str(tmp_path / "run"), probe_l2=1.0, **common))
    assert summary["data"]["val_users"] == 0 and summary["data"]["train_users"] >= 10
    assert summary["probe"]["l2"] == 1.0 and summary["best_val_accuracy"] is None
    model = torch.load(summary["best"], map_location="cpu", weights_only=False)
    assert "training users" in model["reference"]["source"] and model["reference"]["std"] > 0
    # no validation users: the estimate comes from a K-fold cross-fit by account
    assert "cross-validation by account" in summary["estimate"]["unseen_accounts"]["what"]
