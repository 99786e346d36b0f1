"""Long work shows progress when stderr is not a terminal (a log file, a pipe, CI): a line
every IIPA_PROGRESS_SECONDS with stage, done/total and ETA; and `iipa serve` says where it
listens."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from iipa.progress import PROGRESS_ENV, LogProgress, heartbeat, log_interval, progress


def test_log_lines_carry_stage_count_rate_and_eta():
    out = io.StringIO()
    with LogProgress(40, desc="features", unit="img", every=0.02, stream=out) as bar:
        bar.update(10)
        bar.set_postfix(loss="0.693")
        deadline = time.monotonic() + 60  # ends as soon as the timer thread has written; only bounds a failure
        while bar.lines == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        bar.update(30)
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"iipa: features: 10/40 img \(25%\), [\d.e+]+ img/s, ETA \d+s \(loss=0\.693\)", lines[0]), lines
    assert re.fullmatch(r"iipa: features: 40/40 img done in \d+s", lines[-1]), lines


def test_quiet_work_and_the_interval_setting(monkeypatch):
    out = io.StringIO()
    with LogProgress(5, desc="fast", every=30, stream=out) as bar:
        bar.update(5)
    assert out.getvalue() == ""  # over before the first line is due: nothing, not even "done"
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert log_interval() == 0 and heartbeat("x")._thread is None
    monkeypatch.setenv(PROGRESS_ENV, "soon")
    assert log_interval() == 10
    assert type(progress(3, enabled=False, desc="x")).__name__ == "tqdm"  # --no-progress: a disabled bar


def test_score_into_a_pipe_logs_progress(photo_dir):
    """stderr is a pipe here, as in a CI log: the scoring stage reports itself."""
    env = {**os.environ, PROGRESS_ENV: "0.01"}
    paths = [str(p) for p in sorted(photo_dir.glob("*.jpg"))] * 6
    res = subprocess.run([sys.executable, "-m", "iipa", "score", *paths, "--device", "cpu", "--batch-size", "1",
                          "--format", "csv"], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^iipa: scoring: \d+/24 img", res.stderr, re.M), res.stderr
    assert re.search(r"^iipa: scoring: 24/24 img done in ", res.stderr, re.M), res.stderr
    assert len(res.stdout.splitlines()) == 25  # the table is untouched


def test_serve_prints_the_url_it_listens_on():
    proc = subprocess.Popen([sys.executable, "-m", "iipa", "serve", "--port", "0", "--device", "cpu",
                             "--log-level", "warning"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 240
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "iipa serve ended before it listened"
        match = re.match(r"iipa serve: listening on (http://127\.0\.0\.1:(\d+)/); no API key required", line)
        assert match and int(match[2]) > 0, line  # --port 0: the port it got, not 0
        with urllib.request.urlopen(match[1], timeout=60) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        proc.stderr.close()
