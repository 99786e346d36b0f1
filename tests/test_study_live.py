"""30 simulated participants in parallel against a live server on 127.0.0.1, with retried
and replayed answer posts and a server kill + restart mid-way: afterwards every answer
is in the database exactly once, with the choice first acknowledged to the client."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, select

from iipa.study import Store
from iipa.study.exports import answers_frame
from iipa.study.storage import Answer
from study_util import make_study

N_PARTICIPANTS = 30
TOKEN = "live-token"
PER_PARTICIPANT = 2 + 12 + 2  # training + trials + attention (make_study below)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: str, port: int, log: Path) -> None:
        self.db, self.port, self.log, self.proc = db, port, log, None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "iipa", "study", "serve", "--db", self.db, "--host", "127.0.0.1",
               "--port", str(self.port), "--admin-token", TOKEN, "--signups-per-hour", "100000"]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/meta", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("server did not start:\n" + self.log.read_text())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)  # no graceful shutdown: only commits survive
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def call(client: httpx.Client, method: str, url: str, **kw) -> dict:
    """Retry through connection drops and restarts (bounded)."""
    for _ in range(400):
        try:
            r = client.request(method, url, **kw)
            if r.status_code < 500:
                assert r.status_code < 400, (url, r.status_code, r.text)
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{method} {url}: server unreachable")


def participant(base: str, seed: int, acked: dict, progress: list, errors: list) -> None:
    rng = random.Random(seed)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            demo = {"consent": True, "gender": rng.choice(["female", "male"]), "age_band": "20-29",
                    "instagram": rng.random() < 0.4, "social_over_3h": rng.random() < 0.3}
            reply = call(client, "POST", "/api/participants", json=demo)
            code, item = reply["code"], reply["next"]
            while item["state"] != "done":
                if item["state"] == "break":
                    item = call(client, "POST", f"/api/p/{code}/sessions")["next"]
                    continue
                side, ms = rng.choice(["left", "right"]), rng.randint(200, 3000)
                body = {"pair_id": item["pair_id"], "side": side, "response_ms": ms}
                url = f"/api/p/{code}/answers"
                if rng.random() < 0.2:  # the reply is "lost": the browser posts again
                    try:
                        client.post(url, json=body, timeout=0.001)
                    except httpx.TransportError:
                        pass
                reply = call(client, "POST", url, json=body)
                acked.setdefault((code, item["pair_id"]), (side, ms))
                if rng.random() < 0.2:  # a replay with a different click is ignored
                    other = {"pair_id": item["pair_id"], "side": "left" if side == "right" else "right", "response_ms": 1}
                    assert call(client, "POST", url, json=other)["status"] == "duplicate"
                progress.append(1)
                item = reply["next"]
            assert call(client, "GET", f"/api/p/{code}/review")["n"] == PER_PARTICIPANT - 2
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(repr(exc))


@pytest.mark.slow
def test_parallel_participants_with_retries_and_a_restart(tmp_path):
    db = make_study(tmp_path, n=12, training=2, attention=2)
    server = Server(db, free_port(), tmp_path / "server.log")
    server.start()
    acked: dict = {}
    progress: list = []
    errors: list = []
    base = f"http://127.0.0.1:{server.port}"
    threads = [threading.Thread(target=participant, args=(base, i, acked, progress, errors), daemon=True)
               for i in range(N_PARTICIPANTS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(progress) < N_PARTICIPANTS * PER_PARTICIPANT // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = len(progress)
        server.kill()
        time.sleep(0.5)
        server.start()
        for t in threads:
            t.join(240)
        assert not any(t.is_alive() for t in threads), "participants did not finish"
    finally:
        server.stop()
    assert not errors, errors[:3]
    assert 0 < killed_at < N_PARTICIPANTS * PER_PARTICIPANT  # the restart happened mid-way

    store = Store(db)
    with store.session() as s:
        dup = s.execute(select(Answer.participant_id, Answer.pair_id, func.count())
                        .group_by(Answer.participant_id, Answer.pair_id).having(func.count() > 1)).all()
    assert dup == []
    df = answers_frame(store)
    assert len(df) == len(acked) == N_PARTICIPANTS * PER_PARTICIPANT
    stored = {(r.participant, r.pair_id): (r.chosen_side, r.client_response_ms) for r in df.itertuples()}
    assert stored == acked
    per = df.groupby("participant").size()
    assert len(per) == N_PARTICIPANTS and (per == PER_PARTICIPANT).all()
    assert pd.Series([k for k, _ in stored]).nunique() == N_PARTICIPANTS
