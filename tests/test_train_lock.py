"""One training run per --out folder: a second run exits 2 naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iipa.train.lock import LOCK_NAME, RunLocked, run_lock

HOLD = """
import sys, time
from iipa.train.lock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.kill()
    proc.wait(10)


def test_second_run_on_the_same_folder_exits_2_naming_the_holder(held, run_cli, tmp_path):
    out, proc = held
    with pytest.raises(RunLocked, match=f"pid {proc.pid}.*started 20"):
        with run_lock(out):
            pass
    code, _, err = run_cli("train", "--pairs", tmp_path / "pairs.parquet", "--images", tmp_path,
                           "--out", out, "--backbone", "tiny")
    assert code == 2 and f"pid {proc.pid}" in err and "another `iipa train`" in err, err


def test_lock_is_released_when_the_holder_dies(held):
    out, proc = held
    proc.kill()
    proc.wait(10)
    # The kernel drops the dead holder's lock when proc.wait() has reaped it: the first try
    # normally succeeds. The deadline only ends a failing test; 30 s is far beyond any scheduling
    # delay of a loaded 2-vCPU machine.
    deadline = time.monotonic() + 30
    while True:
        try:
            with run_lock(out):
                break
        except RunLocked:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert (out / LOCK_NAME).is_file()


def test_out_naming_a_file_is_a_clear_exit_2(tmp_path, run_cli):
    f = tmp_path / "file.txt"
    f.write_text("x")
    code, _, err = run_cli("train", "--pairs", tmp_path / "p.parquet", "--images", tmp_path, "--out", f,
                           "--backbone", "tiny")
    assert code == 2 and "is a file" in err and "Traceback" not in err, err


TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "none"}


@pytest.mark.parametrize("env", [{"RANK": "1"}, {"RANK": "1", "WORLD_SIZE": "2"},
                                 {**TORCHRUN_ENV, "TORCHELASTIC_RUN_ID": None},  # not launched, no process group
                                 {**TORCHRUN_ENV, "RANK": "2"}, {**TORCHRUN_ENV, "WORLD_SIZE": "1"}])
def test_a_stray_rank_in_the_environment_does_not_skip_the_lock(held, monkeypatch, env):
    out, proc = held
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
        with run_lock(out):
            pass


def test_a_non_zero_rank_of_a_torchrun_launch_shares_rank_0s_lock(held, monkeypatch):
    out, _ = held
    for key, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(key, value)
    with run_lock(out):  # rank 0 (the holder) took it for the whole run
        pass


def test_a_stray_rank_alone_trains_and_writes_what_one_process_writes(tmp_path, run_cli, monkeypatch):
    """RANK=1 without the rest of a torchrun launch is one process: the runner writes run.json
    and the command the companions and the summary, as without it (the trainer is a stand-in:
    its own rank comes from WORLD_SIZE, which is unset)."""
    from iipa.train import runner

    class Trainer:
        def __init__(self, config):
            self.out = Path(config.out)

        def run(self):
            return {"best": str(self.out / "best.pt")}

    monkeypatch.setattr(runner, "trainer_class", lambda config: Trainer)
    monkeypatch.setattr(runner, "write_companions", lambda summary: [f"model: {summary['best']} (ONNX: best.onnx)"])
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "1")
    (tmp_path / "pairs.parquet").write_bytes(b"")
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", "--pairs", tmp_path / "pairs.parquet", "--images", tmp_path, "--out", out,
                                "--backbone", "tiny")
    assert code == 0, err
    assert (out / runner.SETTINGS).is_file() and "best.onnx" in err and '"best"' in stdout, err
