"""The simulated crawl: schema, the likes model's distributions, determinism, the CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from iipa.errors import IIPAError
from iipa.simulate import (
    EFFECT_COLUMNS,
    POSTS_SCHEMA,
    SimConfig,
    read_config,
    simulate,
    true_order_agreement,
    write_crawl,
)

POSTS_COLUMNS = ["post_id", "user_id", "taken_at", "crawled_at", "media_type", "likes", "comments", "caption",
                 "hashtags", "mentions", "followers", "following", "user_posts"]


@pytest.fixture(scope="module")
def crawl() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate(SimConfig(users=1500, posts_per_user=20, seed=11))


def _within_user(posts: pd.DataFrame, values: pd.Series) -> pd.Series:
    """Values minus the user's mean: compares posts of one user, as PDIPs do."""
    return values - values.groupby(posts["user_id"]).transform("mean")


def test_posts_follow_the_posts_schema(crawl):
    posts, truth = crawl
    assert list(posts.columns) == POSTS_COLUMNS
    assert posts["post_id"].is_unique and posts["post_id"].str.fullmatch(r"[A-Za-z0-9_-]{11}").all()
    assert all(isinstance(v, str) for v in posts["user_id"].head(100))
    for col in ("taken_at", "crawled_at"):
        assert isinstance(posts[col].dtype, pd.DatetimeTZDtype) and str(posts[col].dt.tz) == "UTC"
    assert (posts["taken_at"] < posts["crawled_at"]).all()
    assert set(posts["media_type"]) == {"image", "video", "carousel"}
    for col in ("likes", "comments", "followers", "following", "user_posts"):
        assert posts[col].dtype == np.int64 and (posts[col] >= 0).all(), col
    counts = posts.groupby("user_id")["post_id"].transform("size")
    assert (posts["user_posts"] == counts).all()
    assert list(truth["post_id"]) == list(posts["post_id"])


def test_hashtag_and_mention_lists_are_what_the_caption_says(crawl):
    posts, _ = crawl
    sample = posts.sample(2000, random_state=0)
    for caption, tags, mentions in zip(sample["caption"], sample["hashtags"], sample["mentions"], strict=True):
        assert re.findall(r"#(\w+)", caption) == list(tags)
        assert re.findall(r"@([\w.]+)", caption) == list(mentions)


def test_parquet_on_disk_has_the_schema_and_the_same_rows(tmp_path):
    cfg = SimConfig(users=80, seed=4)
    files = write_crawl(tmp_path / "sim", cfg)
    assert pq.read_schema(files.posts).remove_metadata() == POSTS_SCHEMA
    posts, truth = simulate(cfg)
    pd.testing.assert_frame_equal(pd.read_parquet(files.posts), posts)
    pd.testing.assert_frame_equal(pd.read_parquet(files.truth), truth)
    assert read_config(files.config) == cfg
    assert write_crawl(tmp_path / "sim", cfg, reuse=True).reused
    assert not write_crawl(tmp_path / "sim", SimConfig(users=80, seed=5), reuse=True).reused


def test_followers_and_activity_are_heavy_tailed():
    posts, _ = simulate(SimConfig(users=4000, posts_per_user=3, seed=2))
    users = posts.drop_duplicates("user_id")
    f = np.sort(users["followers"].to_numpy(float))
    assert f.max() / np.median(f) > 100
    # Hill estimator of the tail index on the top 5 %: the model's Pareto alpha is 1.1
    k = len(f) // 20
    alpha = 1.0 / np.mean(np.log(f[-k:] / f[-k - 1]))
    assert 0.8 < alpha < 1.5, alpha
    activity = users["user_posts"].to_numpy(float)
    assert activity.max() / np.median(activity) > 5


def test_likes_grow_with_followers(crawl):
    posts, _ = crawl
    rho = spearmanr(np.log(posts["followers"]), np.log1p(posts["likes"])).statistic
    assert rho > 0.5


def test_young_posts_have_fewer_likes_than_the_same_users_older_ones(crawl):
    posts, _ = crawl
    age = (posts["crawled_at"] - posts["taken_at"]).dt.total_seconds() / 86400
    resid = _within_user(posts, np.log1p(posts["likes"]))
    young, month_old = resid[age < 3].mean(), resid[(age > 30) & (age < 60)].mean()
    assert (age < 3).sum() > 50
    assert young < month_old - 0.5


def test_popular_hashtags_and_celebrity_mentions_raise_likes(crawl):
    posts, truth = crawl
    resid = _within_user(posts, np.log1p(posts["likes"]))
    popular = posts["hashtags"].map(lambda tags: any(t in {"love", "instagood", "photooftheday"} for t in tags))
    assert resid[popular].mean() > resid[posts["hashtags"].map(len) == 0].mean() + 0.1
    assert (truth["caption_effect"] > 0).mean() > 0.4


def test_caption_statistics_resemble_table_1(crawl):
    posts, _ = crawl
    assert abs((posts["hashtags"].map(len) == 0).mean() - 0.46) < 0.05
    assert abs((posts["mentions"].map(len) == 0).mean() - 0.48) < 0.05
    assert abs((posts["caption"] == "").mean() - 0.11) < 0.03
    words = posts["caption"].str.split().map(lambda toks: sum(t[0] not in "#@" for t in toks))
    assert 0.2 < (words > 6).mean() < 0.4            # long captions exist, PDIP rules drop them
    # users reuse hashtag sets, so the same-hashtags pair rule leaves pairs to build
    key = posts["hashtags"].map(lambda t: " ".join(sorted(t)))
    repeated = posts[key != ""].groupby(["user_id", key[key != ""]]).size()
    assert (repeated > 1).mean() > 0.3


def test_followers_grow_until_the_crawl(crawl):
    posts, truth = crawl
    f = truth["followers_at_post"]
    assert (f <= posts["followers"] * (1 + 1e-6)).all()
    # posts are in time order within a user, so the audience never shrinks from one to the next
    step = f.groupby(posts["user_id"]).diff().dropna()
    assert (step >= -1e-3 * f.loc[step.index]).all() and (step > 0).mean() > 0.5
    year_old = (posts["crawled_at"] - posts["taken_at"]).dt.days > 300
    assert (f[year_old] / posts["followers"][year_old]).median() < 0.8


def test_truth_decomposes_the_likes(crawl):
    _, truth = crawl
    assert abs(truth["intrinsic"].mean()) < 0.05 and abs(truth["intrinsic"].std() - 1) < 0.05
    total = truth[list(EFFECT_COLUMNS)].sum(axis=1)
    np.testing.assert_allclose(total, truth["expected_log_likes"], atol=1e-4)
    np.testing.assert_allclose(truth["intrinsic_effect"], 0.6 * truth["intrinsic"], atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_beta_sets_how_much_the_image_matters(beta):
    posts, truth = simulate(SimConfig(users=300, posts_per_user=20, seed=3, beta=beta))
    rho = spearmanr(truth["intrinsic"], _within_user(posts, np.log1p(posts["likes"]))).statistic
    assert (rho > 0.5) if beta else (abs(rho) < 0.06), rho


def test_same_seed_same_crawl_other_seed_other_crawl():
    a_posts, a_truth = simulate(SimConfig(users=120, seed=7))
    b_posts, b_truth = simulate(SimConfig(users=120, seed=7))
    pd.testing.assert_frame_equal(a_posts, b_posts)
    pd.testing.assert_frame_equal(a_truth, b_truth)
    c_posts, c_truth = simulate(SimConfig(users=120, seed=8))
    assert not set(a_posts["post_id"]) & set(c_posts["post_id"])
    assert not a_truth["intrinsic"].head(100).equals(c_truth["intrinsic"].head(100))


def test_total_posts_is_exact_across_blocks(monkeypatch):
    import iipa.simulate.network as network

    monkeypatch.setattr(network, "BLOCK_USERS", 16)     # many blocks at a tiny size
    posts, truth = simulate(SimConfig(users=100, posts=1234, seed=1))
    assert len(posts) == len(truth) == 1234 and posts["post_id"].is_unique
    assert posts["user_id"].is_monotonic_increasing


def test_true_order_agreement(crawl, tmp_path):
    _, truth = crawl
    t = truth.head(200)
    a, b = t.iloc[::2].reset_index(drop=True), t.iloc[1::2].reset_index(drop=True)
    a_high = a["intrinsic"].to_numpy() > b["intrinsic"].to_numpy()
    right = pd.DataFrame({"high_id": np.where(a_high, a["post_id"], b["post_id"]),
                          "low_id": np.where(a_high, b["post_id"], a["post_id"])})
    assert true_order_agreement(right, truth) == 1.0
    swapped = right.rename(columns={"high_id": "low_id", "low_id": "high_id"})
    assert true_order_agreement(swapped, truth) == 0.0
    mixed = pd.concat([right.head(30), swapped.head(70)])
    assert true_order_agreement(mixed, truth) == pytest.approx(0.3)
    pq.write_table(pa.Table.from_pandas(truth), tmp_path / "truth.parquet")
    assert true_order_agreement(right, tmp_path / "truth.parquet") == 1.0
    with pytest.raises(IIPAError, match="not in the simulation's truth table"):
        true_order_agreement(pd.DataFrame({"high_id": ["nope"], "low_id": [t["post_id"].iloc[0]]}), truth)


def test_bad_parameters_are_named():
    with pytest.raises(IIPAError, match="follower_tail"):
        SimConfig(follower_tail=0)
    with pytest.raises(IIPAError, match="crawl_date"):
        SimConfig(crawl_date="yesterday")
    with pytest.raises(IIPAError, match="unknown simulation parameter"):
        SimConfig.from_dict({"users": 3, "colour": 1})


def test_cli_writes_a_crawl_and_renders_the_pairs_images(run_cli, tmp_path):
    from iipa.pairs.table import write_pairs

    out = tmp_path / "sim"
    code, stdout, err = run_cli("simulate", "--out", out, "--users", 40, "--posts-per-user", 5, "--seed", 2)
    assert code == 0, err
    assert stdout.strip() == str(out / "posts.parquet") and "200 posts by 40 users" in err
    posts = pd.read_parquet(out / "posts.parquet")
    assert len(posts) == 200 and read_config(out).seed == 2
    pairs = pd.DataFrame({"high_id": posts["post_id"][:4].to_numpy(), "low_id": posts["post_id"][4:8].to_numpy()})
    write_pairs(pairs, tmp_path / "pairs.parquet")
    code, _, err = run_cli("simulate", "--out", out, "--users", 40, "--posts-per-user", 5, "--seed", 2,
                           "--render-pairs", tmp_path / "pairs.parquet", "--images", tmp_path / "img", "--size", 32)
    assert code == 0, err
    assert "reused" in err and "images: 8 at 32x32 px" in err
    assert sorted(p.stem for p in (tmp_path / "img").glob("*.jpg")) == sorted(posts["post_id"][:8])


def test_cli_errors(run_cli, tmp_path):
    code, _, err = run_cli("simulate", "--out", tmp_path, "--posts", 10, "--posts-per-user", 2)
    assert code == 2 and "not allowed with" in err
    code, _, err = run_cli("simulate", "--out", tmp_path, "--users", 0)
    assert code == 2 and "--users" in err
    code, _, err = run_cli("simulate", "--out", tmp_path / "s", "--users", 5, "--render-pairs", tmp_path / "none.parquet")
    assert code == 2 and "no such pairs file" in err


def test_no_post_is_taken_after_its_crawl_even_with_a_one_day_history():
    posts, _ = simulate(SimConfig(users=300, posts_per_user=20, seed=0, history_days=1))
    assert (posts["taken_at"] < posts["crawled_at"]).all()
