"""`iipa experiment label-noise | architectures | baseline` at test size."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from _pairsynth import make_pair_set

TINY = ("--pretrained", "none", "--backbone-lr", "3e-3", "--head-lr", "3e-3", "--batch-size", "32",
        "--workers", "0", "--no-progress", "--precision", "fp32")


@pytest.fixture(scope="module")
def exp_set(tmp_path_factory):
    return make_pair_set(tmp_path_factory.mktemp("expset"), n_train=96, n_val=24, n_test=48, size=76)


@pytest.mark.slow
def test_label_noise_experiment_writes_table_csv_and_plot(exp_set, run_cli, tmp_path):
    pairs, images = exp_set
    out = tmp_path / "noise"
    code, stdout, err = run_cli("experiment", "label-noise", "--pairs", pairs, "--images", images, "--out", out,
                                "--backbone", "tiny", "--levels", "0,40", "--epochs", "2", *TINY)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert df["label_noise"].tolist() == [0.0, 0.4]
    assert df["test_pairs"].tolist() == [48, 48]
    assert (df["ci95_low"] <= df["test_accuracy"]).all() and (df["test_accuracy"] <= df["ci95_high"]).all()
    assert df["test_accuracy"].iloc[0] >= 0.85
    assert "| q=0% |" in stdout and (out / "results.md").read_text().startswith("## Label noise")
    svg = (out / "results.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "test pairwise accuracy (95% CI)" in svg and "40%" in svg
    flipped = [json.loads(line) for line in (out / "noise_40" / "metrics.jsonl").read_text().splitlines()][0]
    assert flipped["flipped_labels"] == round(0.4 * 96)


@pytest.mark.slow
def test_architectures_experiment_records_unavailable_weights_as_an_error_row(exp_set, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached torchvision weights
    pairs, images = exp_set
    out = tmp_path / "arch"
    args = [a for a in TINY if a not in ("--pretrained", "none")]
    code, _, err = run_cli("experiment", "architectures", "--pairs", pairs, "--images", images, "--out", out,
                           "--backbones", "tiny,resnet18", "--pretrained", "imagenet", "--profile", "small",
                           "--epochs", "1", *args)
    assert code == 2 and "none of the 2 runs could be used" in err, err  # every run failed: nothing to report
    df = pd.read_csv(out / "results.csv").set_index("name")
    assert "no pretrained weights" in df.loc["tiny", "error"]
    assert "ImageNet weights" in df.loc["resnet18", "error"]
    code, _, err = run_cli("experiment", "architectures", "--pairs", pairs, "--images", images, "--out", tmp_path / "a2",
                           "--backbones", "tiny,resnet18", "--profile", "small", "--epochs", "1",
                           "--max-train-pairs", "64", "--max-val-pairs", "8", *TINY)
    assert code == 0, err
    df = pd.read_csv(tmp_path / "a2" / "results.csv").set_index("name")
    assert df["error"].isna().all() and (df["test_pairs"] == 48).all()
    assert df.loc["resnet18", "parameters"] > 100 * df.loc["tiny", "parameters"]
    assert (tmp_path / "a2" / "results.svg").exists()


@pytest.mark.slow
def test_baseline_reports_pearson_and_pairwise_accuracy(exp_set, run_cli, tmp_path):
    pairs, images = exp_set
    posts = pairs.parent / "posts.parquet"
    code, stdout, err = run_cli("experiment", "baseline", "--posts", posts, "--pairs", pairs, "--images", images,
                                "--out", tmp_path / "abs", "--backbone", "tiny", "--epochs", "10", *TINY)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["train_posts"] == 2 * 96 and report["test_posts"] == 2 * 48
    # followers drive likes, so absolute prediction correlates strongly ...
    assert report["pearson_r_train"] > 0.8 and report["pearson_r_test"] > 0.8
    # ... and the pairs, which share the user, are judged on all 48 test PDIPs
    assert report["test_pairs"]["n"] == 48 and 0 <= report["test_pairs"]["accuracy"] <= 1
    # within a user only brightness moves likes; the image scalar, oriented as the MLP uses it, ranks
    assert report["test_pairs_image_scalar_only"]["accuracy"] >= 0.6
    assert report["absent_features"] == []
    saved = json.loads((tmp_path / "abs" / "baseline.json").read_text())
    assert saved["pearson_r_test"] == report["pearson_r_test"]
    import torch

    assert "mlp.0.weight" in torch.load(tmp_path / "abs" / "baseline.pt", weights_only=True)["state_dict"]


def test_baseline_names_a_posts_table_without_likes(exp_set, run_cli, tmp_path):
    pairs, images = exp_set
    bad = tmp_path / "posts.csv"
    bad.write_text("post_id,user_id\np00000,u0\n")
    code, _, err = run_cli("experiment", "baseline", "--posts", bad, "--pairs", pairs, "--images", images,
                           "--out", tmp_path / "x", "--backbone", "tiny", *TINY)
    assert code == 2 and "posts.csv" in err and "likes" in err
