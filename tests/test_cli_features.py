"""`iipa weights`, the offline switch, `iipa compare`, paths on stdin, and `iipa train`
continuing a finished run."""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys

import pytest
import torch

from _pairsynth import make_pair_set
from iipa import PopularityNet, save_checkpoint
from iipa.compare import compare, preference_probability
from iipa.model.weights import NamedWeights, register_weights, weights_path
from iipa.model.weights_store import recorded_sha256
from iipa.scoring import make_scorer


@pytest.fixture
def local_weights(tmp_path, monkeypatch):
    """Named weights served by a throwaway HTTP server on 127.0.0.1 (no checksum registered),
    with an empty cache dir of their own."""
    from test_weights import _Server

    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    payload = save_checkpoint(PopularityNet("tiny"), tmp_path / "src.pt").read_bytes()
    server = _Server(payload)
    entry = register_weights(NamedWeights("test-cli-tiny", "test-cli-tiny.pt", server.url, "tiny", "small"),
                             replace=True)
    yield entry, server, payload
    server.close()


def test_weights_download_records_sha256_then_verify_detects_a_changed_file(local_weights, run_cli):
    entry, server, payload = local_weights
    code, out, _ = run_cli("weights", "path", entry.name)
    assert code == 1 and out.strip() == str(weights_path(entry))  # not downloaded yet
    code, out, err = run_cli("weights", "download", entry.name)
    assert code == 0, err
    assert recorded_sha256(weights_path(entry)) == hashlib.sha256(payload).hexdigest()
    code, out, _ = run_cli("weights", "verify", entry.name, "--format", "json")
    assert code == 0 and json.loads(out)[0]["status"] == "ok"
    code, out, _ = run_cli("weights", "list", "--format", "csv")
    assert f"{entry.name},tiny,small,yes,{hashlib.sha256(payload).hexdigest()}" in out
    with open(weights_path(entry), "ab") as fh:
        fh.write(b"tampered")
    code, out, err = run_cli("weights", "verify", entry.name, "--format", "csv")
    assert code == 1 and "MISMATCH" in out and entry.name in err


def test_verify_records_a_checksum_for_a_file_put_there_by_hand(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "home"))
    entry = register_weights(NamedWeights("test-cli-manual", "manual.pt", "http://127.0.0.1:9/x", "tiny", "small"),
                             replace=True)
    target = weights_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"weights copied from another machine")
    code, out, _ = run_cli("weights", "verify", entry.name, "--format", "csv")
    assert code == 0 and ",recorded," in out
    code, out, _ = run_cli("weights", "verify", entry.name, "--format", "csv")
    assert code == 0 and ",ok," in out


@pytest.mark.parametrize("how", ["env", "flag", "subcommand-flag"])
def test_offline_switch_never_touches_the_network(local_weights, run_cli, monkeypatch, how, photo_dir):
    entry, server, _ = local_weights
    argv = ["score", str(photo_dir), "--model", entry.name, "--workers", "0"]
    if how == "env":
        monkeypatch.setenv("IIPA_OFFLINE", "1")
    else:  # main() sets IIPA_OFFLINE for the process: monkeypatch restores it afterwards
        monkeypatch.setenv("IIPA_OFFLINE", "")
        argv = ["--offline", *argv] if how == "flag" else [*argv, "--offline"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    code, _, err = run_cli(*argv)
    assert code == 2 and "offline" in err and str(weights_path(entry)) in err
    assert server.requests == []  # no download was even attempted
    code, _, err = run_cli("weights", "download", entry.name, *(["--offline"] if how != "env" else []))
    assert code == 2 and "offline: IIPA_OFFLINE=1 or --offline" in err and server.requests == []


def test_compare_probability_is_the_logistic_of_the_score_difference(tiny_checkpoint, photo_dir, run_cli):
    a, b = photo_dir / "chelsea.jpg", photo_dir / "coffee.jpg"
    scorer = make_scorer(str(tiny_checkpoint), precision="fp32", num_workers=0)
    ab, ba = compare(scorer, a, b), compare(scorer, b, a)
    assert ab.probability_a == pytest.approx(1 / (1 + math.exp(-(ab.score_a - ab.score_b))))
    assert ab.probability_a + ba.probability_a == pytest.approx(1.0)  # swap A and B: the prediction flips
    assert ab.more_popular == ba.more_popular
    code, out, err = run_cli("compare", a, b, "--model", tiny_checkpoint, "--precision", "fp32", "--format", "json")
    row = json.loads(out)[0]
    assert code == 0 and row["probability_a"] == pytest.approx(ab.probability_a, abs=1e-6)
    assert "logistic" in err
    code, _, err = run_cli("compare", a, photo_dir / "missing.jpg", "--model", tiny_checkpoint)
    assert code == 2 and "missing.jpg" in err


def test_preference_probability_is_stable_for_large_differences():
    assert preference_probability(800.0, 0.0) == 1.0
    assert preference_probability(0.0, 800.0) == 0.0
    assert preference_probability(1.5, 1.5) == 0.5


def test_dash_reads_paths_from_stdin(tiny_checkpoint, photo_dir, run_cli, monkeypatch):
    names = sorted(p.name for p in photo_dir.glob("*.jpg"))
    listing = "\n".join(str(photo_dir / n) for n in names) + "\n# a comment\n\n" + str(photo_dir / "nope.jpg") + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    code, out, _ = run_cli("score", "-", "--model", tiny_checkpoint, "--format", "csv", "--workers", "0")
    lines = out.strip().splitlines()[1:]
    assert code == 1  # nope.jpg is reported, the others are scored
    assert [line.split(",")[0] for line in lines] == [str(photo_dir / n) for n in names] + [str(photo_dir / "nope.jpg")]
    assert lines[-1].endswith("not found")


def test_train_continues_a_finished_run_when_epochs_grows(tmp_path, run_cli):
    pairs, images = make_pair_set(tmp_path / "set", n_train=32, n_val=16, n_test=8, size=40)
    base = ["train", "--recipe", "paper", "--pairs", pairs, "--images", images, "--out", tmp_path / "run", "--backbone", "tiny",
            "--pretrained", "none", "--profile", "small", "--batch-size", "16", "--workers", "0", "--no-progress"]
    code, out, err = run_cli(*base, "--epochs", "1")
    assert code == 0, err
    assert json.loads(out)["epochs_completed"] == 1
    code, out, err = run_cli(*base, "--epochs", "1")
    assert code == 0 and "already finished" in err and "larger --epochs" in err
    code, out, err = run_cli(*base, "--epochs", "3")
    assert code == 0, err
    assert "continuing to 3 epochs" in err
    summary = json.loads(out)
    assert summary["epochs_completed"] == 3 and summary["steps"] == 3 * 2
