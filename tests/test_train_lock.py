"""One training run per --out folder: a second run exits 2 naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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
    deadline = time.monotonic() + 5
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
