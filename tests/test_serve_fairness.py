"""Uploads cannot starve each other, and client addresses can be trusted: parse memory held
as bytes arrive, a minimum body rate, a per-address cap on uploads arriving, a disk budget
for spooled parts, a full temporary folder answered 507, proxy headers ignored unless a
proxy is named, wrong keys backed off per real address (never locking out another's key)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from iipa.clientlimits import FailureBackoff
from iipa.serve import ServeSettings, create_app
from iipa.serve.bodies import PARSE_OVERHEAD_BYTES, SPOOL_MAX_BYTES, UploadLedger, parse_reserve
from iipa.serve.memory import MemoryBudget
from iipa.serve.metrics import Metrics
from iipa.serve.middleware import KEY_FAILURES_FREE, ServiceMiddleware
from serve_helpers import GuardedServer, SlowClients, encode

KEY = "fair-key-0123456789"
MULTIPART = [(b"content-type", b"multipart/form-data; boundary=b")]


def _jpeg() -> bytes:
    return encode(np.full((32, 32, 3), 128, np.uint8))


def _middleware(app, settings: ServeSettings, budget: MemoryBudget | None = None):
    uploads = UploadLedger(max_per_address=settings.max_uploads_per_address, disk_bytes=settings.upload_disk_bytes,
                           refusal_delay_s=0.01)
    return ServiceMiddleware(app, metrics=Metrics(), settings=settings, budget=budget or MemoryBudget(2**30),
                             uploads=uploads), uploads


def _scope(client: str, headers=(), path: str = "/v1/score") -> dict:
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers), "client": (client, 40000)}


def test_parse_memory_is_held_as_the_body_arrives_not_from_its_declared_length():
    budget = MemoryBudget(2**30)
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(budget.parsing)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw, _ = _middleware(app, ServeSettings(), budget)
    chunks = [b"x" * 10, b"x" * 10, b"x" * 100_000, b"x" * 5_000_000]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    async def send(message):
        pass

    declared = [(b"content-length", b"5100020"), *MULTIPART]
    asyncio.run(mw(_scope("10.0.0.1", declared), receive, send))
    received = np.cumsum([len(c) for c in chunks])
    # While the body arrives the hold is what the bytes so far need, growing with them:
    # 20 bytes hold one 16 KiB step, not the ~2.25 MiB the declared length would allow.
    assert seen[:3] == [parse_reserve(int(n), 32) for n in received[:3]]
    assert seen[0] <= 16 * 1024 < seen[2] < 32 * SPOOL_MAX_BYTES + PARSE_OVERHEAD_BYTES
    assert seen[3] == 0  # released once the whole body has arrived
    assert budget.in_use == 0 and budget.peak == 32 * SPOOL_MAX_BYTES + PARSE_OVERHEAD_BYTES


def test_only_time_spent_waiting_for_the_client_counts_toward_the_body_rate():
    settings = ServeSettings(min_body_rate=1000, body_rate_window_s=0.3, body_timeout_s=20)

    async def slow_app(scope, receive, send):  # the app pauses between reads: not the client's fault
        while (await receive()).get("more_body"):
            await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def run(app, delay_s: float) -> int:
        mw, _ = _middleware(app, settings)
        left = [b"x" * 100] * 5
        sent = []

        async def receive():
            await asyncio.sleep(delay_s)
            body = left.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(left)}

        async def send(message):
            sent.append(message)

        asyncio.run(mw(_scope("10.0.0.1", MULTIPART), receive, send))
        return sent[0]["status"]

    assert run(slow_app, 0.0) == 200  # 1 s of the app's pauses, the client itself instant
    assert run(slow_app, 0.25) == 408  # the client: 100 bytes per 0.25 s waited, below 1000 B/s


def test_uploads_arriving_from_one_address_are_capped_with_429():
    release = asyncio.Event

    async def main():
        gate = release()

        async def app(scope, receive, send):
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        mw, uploads = _middleware(app, ServeSettings(max_uploads_per_address=2))
        statuses = []

        async def call(client):
            sent = []

            async def receive():
                await gate.wait()
                return {"type": "http.request", "body": b"x", "more_body": False}

            async def send(message):
                sent.append(message)

            await mw(_scope(client, MULTIPART), receive, send)
            statuses.append((client, sent[0]["status"], sent[1]["body"]))

        first = [asyncio.create_task(call("10.0.0.1")) for _ in range(2)]
        await asyncio.sleep(0.05)
        await call("10.0.0.1")  # a third body from the same address while two are arriving
        other = asyncio.create_task(call("10.0.0.2"))
        await asyncio.sleep(0.05)
        assert uploads.arriving == {"10.0.0.1": 2, "10.0.0.2": 1}
        gate.set()
        await asyncio.gather(*first, other)
        assert uploads.arriving == {}
        return statuses

    statuses = asyncio.run(main())
    refused = [s for s in statuses if s[1] == 429]
    assert len(refused) == 1 and refused[0][0] == "10.0.0.1" and b"uploads from this address" in refused[0][2]
    assert sorted(s[1] for s in statuses) == [200, 200, 200, 429]


def test_bodies_in_flight_count_against_the_disk_budget():
    async def main():
        gate = asyncio.Event()

        async def app(scope, receive, send):
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        settings = ServeSettings(max_request_bytes=1000, upload_disk_bytes=1500)
        mw, uploads = _middleware(app, settings)
        sent: dict = {"a": [], "b": []}

        async def call(name, client, wait):
            chunks = [b"x" * 800, b""]

            async def receive():
                if len(chunks) == 1 and wait:
                    await gate.wait()
                return {"type": "http.request", "body": chunks.pop(0), "more_body": len(chunks) == 1}

            async def send(message):
                sent[name].append(message)

            await mw(_scope(client, MULTIPART), receive, send)

        first = asyncio.create_task(call("a", "10.0.0.1", True))  # 800 bytes in, the rest owed
        await asyncio.sleep(0.05)
        assert uploads.spooled == 800
        await call("b", "10.0.0.2", False)  # 800 more would pass 1500: refused, nothing kept
        assert uploads.spooled == 800
        gate.set()
        await first
        assert uploads.spooled == 0
        return sent

    sent = asyncio.run(main())
    assert sent["a"][0]["status"] == 200
    assert sent["b"][0]["status"] == 503 and b"upload storage" in sent["b"][1]["body"], sent["b"]
    with pytest.raises(ValueError, match="upload_disk_bytes"):
        ServeSettings(upload_disk_bytes=10 * 2**20)  # below the largest request body (64 MiB)


def test_a_full_temp_folder_is_507_not_400(tiny_checkpoint, monkeypatch):
    from starlette.datastructures import UploadFile

    async def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(UploadFile, "write", full_disk)
    with TestClient(create_app(tiny_checkpoint, ServeSettings())) as c:
        r = c.post("/v1/score", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))])
        assert r.status_code == 507 and "temporary folder is full" in r.json()["detail"], r.text
        assert r.json()["error"] == "insufficient storage" and r.headers["retry-after"]


def test_failure_backoff_doubles_per_address_and_forgets():
    now = [1000.0]
    backoff = FailureBackoff(free=3, first_block_s=10, max_block_s=40, clock=lambda: now[0])
    assert [backoff.failed("a") for _ in range(2)] == [0, 0] and backoff.retry_after("a") == 0
    assert backoff.failed("a") == 10 and backoff.retry_after("a") == 10
    assert backoff.retry_after("b") == 0  # another address is not affected
    now[0] += 10
    assert backoff.failed("a") == 20 and backoff.failed("a") == 40 and backoff.failed("a") == 40  # capped
    now[0] += 40 + 40
    assert backoff.retry_after("a") == 0 and backoff.failed("a") == 0  # quiet for max_block_s: starts over


def test_wrong_keys_lock_out_their_own_address_never_the_one_named_in_a_header(tiny_checkpoint):
    app = create_app(tiny_checkpoint, ServeSettings(api_key=KEY))
    with TestClient(app, client=("10.0.0.66", 5000)) as attacker, TestClient(app, client=("10.0.0.9", 5000)) as victim:
        spoof = {"X-Forwarded-For": "10.0.0.9", "X-Real-IP": "10.0.0.9"}
        codes = [attacker.get("/v1/model", headers={**spoof, "X-API-Key": f"guess-{i}"}).status_code
                 for i in range(KEY_FAILURES_FREE + 30)]
        assert codes[:KEY_FAILURES_FREE] == [401] * KEY_FAILURES_FREE and set(codes[KEY_FAILURES_FREE:]) == {429}
        assert victim.get("/v1/model", headers={"X-API-Key": KEY}).status_code == 200
        assert attacker.get("/v1/model", headers={**spoof, "X-API-Key": KEY}).status_code == 429


async def _echo_client(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["client"][0].encode()})


@pytest.mark.parametrize("allow, sent, seen", [
    (None, "10.1.2.3", "127.0.0.1"),  # default: the header is ignored
    ("10.9.9.9", "10.1.2.3", "127.0.0.1"),  # this peer is not a named proxy: ignored
    ("127.0.0.1", "10.1.2.3", "10.1.2.3"),  # a named proxy: its header names the client
    ("127.0.0.1", "10.0.0.9, 10.1.2.3", "10.1.2.3"),  # a forged entry before the proxy's own is not believed
])
def test_x_forwarded_for_is_honoured_only_from_a_named_proxy(allow, sent, seen):
    with GuardedServer(_echo_client, forwarded_allow_ips=allow) as srv:
        assert httpx.get(srv.url + "/", headers={"X-Forwarded-For": sent}, timeout=5).text == seen


def test_study_admin_guesses_in_a_victims_name_do_not_lock_the_victim_out(tmp_path):
    from iipa.study import Store
    from iipa.study.app import ADMIN_GUESS_BURST
    from iipa.study.app import create_app as study_app
    from study_util import make_study

    app = study_app(Store(make_study(tmp_path, n=2, training=1, attention=1, n_test=6)), admin_token=KEY)
    with TestClient(app, client=("10.0.0.66", 5000)) as attacker, TestClient(app, client=("10.0.0.9", 5000)) as admin:
        for i in range(ADMIN_GUESS_BURST + 20):
            attacker.get("/admin", headers={"X-Forwarded-For": "10.0.0.9", "X-Admin-Token": f"guess-{i}"})
        assert attacker.get("/admin", headers={"X-Admin-Token": "guess-x"}).status_code == 429
        assert admin.get("/admin/export/answers.csv", headers={"X-Admin-Token": KEY}).status_code == 200


def _upload_at_rate(port: int, body: bytes, bytes_per_s: float, result: dict) -> None:
    """POST ``body`` (multipart) at about ``bytes_per_s``, then read the status line."""
    head = (f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=bnd\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    step = max(1, int(bytes_per_s / 20))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(head)
            for i in range(0, len(body), step):
                s.sendall(body[i:i + step])
                time.sleep(0.05)
            result["answer"] = s.recv(4096)
    except OSError as exc:
        result["answer"] = repr(exc).encode()


def _multipart(data: bytes) -> bytes:
    return (b"--bnd\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--bnd--\r\n")


def test_the_pending_cap_evicts_idle_heads_never_a_body_arriving_at_a_normal_rate(tiny_checkpoint):
    # ~600 KB at ~200 KB/s: about 3 s in the body phase, while 14 trickling head clients
    # (reconnecting when dropped) sit over a cap of 8 and a newcomer arrives every 0.1 s, each
    # closing a pending connection. Oldest-first would soon pick the upload.
    photo = encode(np.random.default_rng(1).integers(0, 255, (350, 550, 3), np.uint8), "PNG")
    app = create_app(tiny_checkpoint, ServeSettings())
    with GuardedServer(app, max_pending=8, header_timeout_s=10.0) as srv, SlowClients(srv.port, 14) as heads:
        deadline = time.monotonic() + 10
        while len(srv.ledger.pending) < 14 and time.monotonic() < deadline:
            time.sleep(0.05)
        result: dict = {}
        upload = threading.Thread(target=_upload_at_rate, args=(srv.port, _multipart(photo), 200_000, result))
        upload.start()
        newcomers = []
        while upload.is_alive() and len(newcomers) < 300:
            newcomers.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            newcomers[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.1)
        upload.join(30)
        for c in newcomers:
            c.close()
        assert result["answer"].startswith(b"HTTP/1.1 200"), result["answer"][:300]
        assert srv.ledger.evicted >= 10 and heads.drops > 0  # the cap was really under pressure


def test_a_slow_uploader_is_dropped_while_a_normal_one_succeeds(tiny_checkpoint):
    settings = ServeSettings(min_body_rate=1000, body_rate_window_s=1.0)
    app = create_app(tiny_checkpoint, settings)
    with GuardedServer(app, min_body_rate=1000) as srv:
        slow = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 100000\r\n\r\n--b\r\n")
            slow.append(s)
        answers = [b""] * len(slow)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(answers):
            for i, s in enumerate(slow):
                if answers[i]:
                    continue
                s.settimeout(0.05)
                try:
                    answers[i] = s.recv(4096) or b"<closed>"
                except TimeoutError:
                    s.sendall(b"x")  # one byte every ~0.2 s
        r = httpx.post(srv.url + "/v1/score", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))], timeout=10)
        for i, s in enumerate(slow):  # the rest of each answer, up to the server's close
            s.settimeout(5)
            with contextlib.suppress(OSError):
                while chunk := s.recv(4096):
                    answers[i] += chunk
            s.close()
    assert r.status_code == 200, r.text
    assert all(a.startswith(b"HTTP/1.1 408") and b"bytes/s" in a for a in answers), answers
