"""The recipe table: every `iipa train` / `iipa experiment` option is used or refused; the
default recipe's feature cache resumes; run folders are refused or overwritten on request."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from _pairsynth import make_pair_set
from iipa.commands.train import config_from_args
from iipa.errors import IIPAError
from iipa.train.config import RECIPES, TrainConfig

# Options that name the run rather than configure it.
RUN_NAMING = {"--out", "--pairs", "--images", "--recipe", "--help"}
VALUES = {"--backbone": "tiny", "--profile": "small", "--device": "cpu", "--label-noise": "0.3",
          "--min-pair-p": "0.7", "--max-gap-days": "5", "--lr-decay": "0.5", "--probe-l2": "2"}


def _subparser(*names: str) -> argparse.ArgumentParser:
    from iipa.cli import build_parser

    parser = build_parser()
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _non_default_argv(action: argparse.Action) -> list[list[str]]:
    """Every way to give ``action`` a value other than its default."""
    if isinstance(action, argparse.BooleanOptionalAction):
        return [[s] for s in action.option_strings]
    opt = action.option_strings[0]
    if action.nargs == 0:
        return [[opt]]
    if action.choices:
        return [[opt, str(c)] for c in action.choices if c != action.default]
    return [[opt, VALUES.get(opt, "3")]]


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and not set(action.option_strings) & RUN_NAMING:
            yield from _non_default_argv(action)


def _explicit_default(parser, base, extra, plain) -> bool:
    """The option given with the value the recipe would use anyway (e.g. --soft-labels, default recipe)."""
    dest = parser._option_string_actions[extra[0]].dest
    field = {"draft_decode": "decode"}.get(dest, dest)
    return getattr(parser.parse_args(base + extra), dest) == plain.get(field)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_train_option_is_used_or_refused_by_every_recipe(recipe):
    parser = _subparser("train")
    base = ["--out", "o", "--pairs", "p.parquet", "--images", "i", "--recipe", recipe]
    plain = config_from_args(parser.parse_args(base)).to_dict()
    used, refused = [], []
    for extra in _options(parser):
        try:
            config = config_from_args(parser.parse_args(base + extra))
        except IIPAError as exc:
            assert f"recipe {recipe!r}" in str(exc) or f"'{recipe}'" in str(exc), (extra, exc)
            refused.append(extra[0])
            continue
        changed = {k for k, v in config.to_dict().items() if plain[k] != v}
        if _explicit_default(parser, base, extra, plain):
            continue
        assert changed, f"{extra} is neither used by recipe {recipe!r} nor refused"
        assert changed <= RECIPES[recipe].used, (extra, changed)
        used.append(extra[0])
    assert used and refused  # each recipe has options of its own
    own = {"default": "--probe-l2", "paper": "--label-noise"}[recipe]
    other = {"default": "--label-noise", "paper": "--probe-l2"}[recipe]
    assert own in used and other in refused


@pytest.mark.parametrize("experiment", ["label-noise", "architectures", "baseline"])
def test_every_experiment_option_is_used_or_refused(experiment):
    from iipa.commands.experiment import experiment_config

    parser = _subparser("experiment", experiment)
    base = ["--out", "o", "--pairs", "p.parquet", "--images", "i"] + (["--posts", "x.csv"] if experiment == "baseline" else [])
    plain = experiment_config(argparse.Namespace(experiment=experiment, **vars(parser.parse_args(base)))).to_dict()
    refused = []
    for extra in _options(parser):
        if extra[0] in ("--levels", "--backbones", "--crops", "--posts"):
            continue  # the experiment's own options
        args = argparse.Namespace(experiment=experiment, **vars(parser.parse_args(base + extra)))
        try:
            config = experiment_config(args)
        except IIPAError:
            refused.append(extra[0])
            continue
        if _explicit_default(parser, base, extra, plain):
            continue
        assert config.to_dict() != plain, f"{experiment}: {extra} is neither used nor refused"
    assert {"label-noise": "--label-noise", "architectures": "--backbone", "baseline": "--no-swap"}[experiment] in refused


def test_the_parsers_are_generated_from_the_declarations():
    import dataclasses

    from iipa.train.config import RESUME_FREE, declared, flag

    parser = _subparser("train")
    by_dest = {a.dest: a for a in parser._actions if a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        action = by_dest[f.name]  # every field has exactly its declared flag, help and choices
        assert flag(f.name) in action.option_strings and action.default is None
        assert action.help and "{" not in action.help
        if declared(f.name)["choices"]:
            assert tuple(action.choices) == declared(f.name)["choices"]
    assert {"epochs", "workers", "progress", "device", "out"} <= RESUME_FREE and "probe_l2" not in RESUME_FREE
    own = {r: {flag(o) for o in RECIPES[r].options} for r in RECIPES}
    groups = {g.title: {s for a in g._group_actions for s in a.option_strings} for g in parser._action_groups}
    assert own["paper"] <= groups["paper recipe"] | groups["data"]
    assert own["default"] <= groups["default recipe"] | groups["data"]


@pytest.mark.parametrize("argv,refused", [
    (["baseline", "--posts", "x.csv", "--label-noise", "0"], "--label-noise"),  # given at its default value
    (["label-noise", "--label-noise", "0"], "--label-noise"),
    (["architectures", "--backbone", "resnet50"], "--backbone"),
])
def test_an_experiment_refuses_an_option_given_at_its_default_value(argv, refused):
    from iipa.commands.experiment import experiment_config

    parser = _subparser("experiment", argv[0])
    args = parser.parse_args(["--out", "o", "--pairs", "p.parquet", "--images", "i", *argv[1:]])
    with pytest.raises(IIPAError, match=refused):
        experiment_config(argparse.Namespace(experiment=argv[0], **vars(args)))


def test_the_default_recipe_takes_only_the_precision_scoring_uses():
    assert TrainConfig(recipe="default", precision="fp32").precision == "fp32"
    for precision in ("auto", "bf16", "fp16"):
        with pytest.raises(IIPAError, match="recipe 'default' computes its features in fp32"):
            TrainConfig(recipe="default", precision=precision)
    assert TrainConfig(recipe="paper", precision="bf16").precision == "bf16"


def test_refusal_is_an_exit_2_naming_the_recipe_before_any_work(run_cli, tmp_path):
    code, _, err = run_cli("train", "--pairs", tmp_path / "absent.parquet", "--images", tmp_path, "--out",
                           tmp_path / "run", "--epochs", "5000")
    assert code == 2 and "recipe 'default' does not use --epochs" in err
    assert not (tmp_path / "run").exists()


# -- the default recipe's feature cache ------------------------------------------------------
DEFAULT_FAST = dict(recipe="default", backbone="tiny", pretrained="none", profile="small", progress=False)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_pair_set(tmp_path_factory.mktemp("small"), n_train=60, n_val=16, n_test=4, size=40)


def _default(small_set, out, **kw) -> TrainConfig:
    pairs, images = small_set
    return TrainConfig(pairs=str(pairs), images=str(images), out=str(out), **{**DEFAULT_FAST, **kw})


def _scores(run, images) -> np.ndarray:
    from iipa.evaluate import score_paths

    return score_paths(str(run / "best.pt"), sorted(str(p) for p in images.glob("*.png"))[:40], precision="fp32")


def test_a_run_killed_during_extraction_resumes_to_the_same_model(small_set, tmp_path, monkeypatch):
    from iipa.train import features
    from iipa.train.runner import train

    monkeypatch.setattr(features, "CHUNK", 16)  # 152 photos + the quality pairs' copies and frames
    whole = train(_default(small_set, tmp_path / "whole"))
    n_chunks = len(list((tmp_path / "whole" / "features").glob("*/chunk-*.pt")))
    assert n_chunks >= 10
    real = features.FeatureCache.extract_chunk
    calls = {"n": 0}

    def dies_after_three(self, paths):
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return real(self, paths)

    monkeypatch.setattr(features.FeatureCache, "extract_chunk", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        train(_default(small_set, tmp_path / "killed"))
    chunks = list((tmp_path / "killed" / "features").glob("*/chunk-*.pt"))
    assert len(chunks) == 3 and not (tmp_path / "killed" / "best.pt").exists()
    monkeypatch.setattr(features.FeatureCache, "extract_chunk", real)
    computed = []
    monkeypatch.setattr(features.FeatureCache, "extract_chunk",
                        lambda self, paths: computed.append(len(paths)) or real(self, paths))
    resumed = train(_default(small_set, tmp_path / "killed"))
    assert len(computed) == n_chunks - 3  # the three chunks on disk were not recomputed
    a, b = _scores(tmp_path / "whole", small_set[1]), _scores(tmp_path / "killed", small_set[1])
    assert np.abs(a - b).max() <= 1e-6 and np.ptp(a) > 1e-3  # the same model, and not a constant one
    assert resumed["val_accuracy"] == whole["val_accuracy"]
    ckpt = torch.load(tmp_path / "killed" / "best.pt", weights_only=True)
    assert ckpt["reference"]["mean"] == pytest.approx(whole_ref(tmp_path), abs=1e-6)
    assert ckpt["info"]["config"]["precision"] == "fp32" and ckpt["info"]["config"]["views"] == 1


def whole_ref(tmp_path) -> float:
    return torch.load(tmp_path / "whole" / "best.pt", weights_only=True)["reference"]["mean"]


def test_cached_features_are_fp32_and_match_the_model_scoring_path(small_set, tmp_path):
    from iipa.evaluate import score_paths
    from iipa.model.record import load_model
    from iipa.train.runner import train

    summary = train(_default(small_set, tmp_path / "run", views=5, hflip=False))
    (chunk, *_) = sorted((tmp_path / "run" / "features").glob("*/chunk-*.pt"))
    stored = torch.load(chunk, weights_only=True)["features"]
    assert stored.dtype == torch.float32
    key = json.loads(next((tmp_path / "run" / "features").glob("*/key.json")).read_text())
    assert key["views"] == 5 and key["precision"] == "fp32" and key["flips"] == [False]
    # the probe's validation accuracy is what scoring the checkpoint with 5 crops gives
    import pandas as pd

    pairs = pd.read_parquet(small_set[0])
    val = pairs[pairs["split"] == "val"]
    model = load_model(summary["best"])
    paths = [str(small_set[1] / f"{i}.png") for i in list(val["high_id"]) + list(val["low_id"])]
    s = score_paths(model, paths, crops=5, precision="fp32")
    hi, lo = s[:len(val)], s[len(val):]
    assert summary["val_accuracy"] == pytest.approx(float(np.mean(hi > lo) + 0.5 * np.mean(hi == lo)))


def test_a_folder_with_other_settings_is_refused_unless_overwrite(small_set, tmp_path, run_cli):
    pairs, images = small_set
    out = tmp_path / "run"
    argv = ["train", "--pairs", pairs, "--images", images, "--out", out, "--backbone", "tiny", "--pretrained", "none",
            "--profile", "small", "--no-progress"]
    assert run_cli(*argv)[0] == 0
    assert (out / "best.onnx").is_file()
    lock = out / ".iipa-train.lock"
    assert lock.is_file() and lock.read_text() == ""  # no holder recorded after the run
    before = (out / "best.pt").read_bytes()
    code, _, err = run_cli(*argv, "--probe-l2", "5")
    assert code == 2 and "other settings" in err and "probe_l2" in err and "--overwrite" in err
    assert (out / "best.pt").read_bytes() == before
    code, _, err = run_cli(*argv, "--probe-l2", "5", "--overwrite")
    assert code == 0 and "score with: iipa score --model" in err
    assert json.loads((out / "run.json").read_text())["probe_l2"] == 5


def test_counts_agree_between_the_printed_line_and_the_summary(small_set, tmp_path, capsys):
    from iipa.train.runner import train

    summary = train(_default(small_set, tmp_path / "run"))
    err = capsys.readouterr().err
    assert f"of {summary['data']['train_users']} training users" in err
