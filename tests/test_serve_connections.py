"""Slow clients against the connection limits of iipa.httpserver (issue 23, item 3): clients
stuck in their head or body phase never take the slots of admitted requests, a timeout
answer closes the connection, request heads over 16 KiB are refused."""

from __future__ import annotations

import socket
import time

import httpx

from iipa.serve import ServeSettings, create_app
from serve_helpers import GuardedServer, SlowClients


def _probe(url: str, n: int, every_s: float) -> list[int]:
    codes = []
    for _ in range(n):
        try:
            codes.append(httpx.get(url, timeout=3).status_code)
        except httpx.HTTPError as exc:
            codes.append(type(exc).__name__)
        time.sleep(every_s)
    return codes


def test_healthz_answers_while_slow_clients_hold_more_connections_than_the_cap(tiny_checkpoint):
    app = create_app(tiny_checkpoint, ServeSettings())
    with GuardedServer(app, max_pending=16, max_requests=4, header_timeout_s=1.0, body_timeout_s=1.0) as srv:
        with SlowClients(srv.port, 20) as heads, SlowClients(srv.port, 20, body=True) as bodies:
            time.sleep(0.5)
            codes = _probe(srv.url + "/healthz", 12, 0.2)
        assert codes == [200] * 12, (codes, srv.ledger)
        # The attack really outgrew the cap: old slow connections were closed for newcomers.
        assert srv.ledger.evicted > 0 and heads.drops + bodies.drops > 0
        assert srv.ledger.overloaded == 0  # pending connections never counted as admitted


def test_study_front_page_answers_under_the_same_attack(tmp_path):
    from iipa.study.app import create_app as study_app
    from study_util import make_study

    app = study_app(make_study(tmp_path), admin_token="t" * 16)
    with GuardedServer(app, max_pending=16, header_timeout_s=1.0, body_timeout_s=1.0) as srv:
        with SlowClients(srv.port, 40):
            time.sleep(0.5)
            codes = _probe(srv.url + "/", 8, 0.2)
        assert codes == [200] * 8, codes
        assert srv.ledger.evicted > 0


def _read_until_closed(sock: socket.socket, trickle: bytes, seconds: float) -> tuple[bytes, bool]:
    """Read while sending ``trickle`` every 0.1 s; (bytes, whether the server closed)."""
    sock.settimeout(0.1)
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
            if not chunk:
                return out, True
            out += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:  # our trickle crossed the server's close: it did close
            return out, True
        try:
            sock.sendall(trickle)
        except OSError:
            return out, True
    return out, False


def test_a_body_timeout_answers_408_with_connection_close_and_closes(tiny_checkpoint):
    app = create_app(tiny_checkpoint, ServeSettings(body_timeout_s=0.5))
    with GuardedServer(app, body_timeout_s=0.5) as srv, socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\n")
        answer, closed = _read_until_closed(s, b"x", 4.0)  # trickling on, as the attacker did
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 408") and b"connection: close" in head, answer[:300]
    assert closed, "the connection stayed open after the 408"


def test_a_head_that_never_ends_is_cut_and_a_long_head_is_refused(tiny_checkpoint):
    app = create_app(tiny_checkpoint, ServeSettings())
    with GuardedServer(app, header_timeout_s=0.5) as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            answer, closed = _read_until_closed(s, b"X", 3.0)  # one more header byte each 0.1 s
            assert closed and answer == b"", answer
        for size, expected in ((15_000, b"200"), (20_000, b"431"), (100_000, b"431")):
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                filler = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 90) for i in range(size // 100))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
                answer, _ = _read_until_closed(s, b"", 2.0)
            status = answer[9:12]
            # h11 itself refuses an incomplete head past 16 KiB with 400 when it comes in pieces.
            assert status == expected or (expected == b"431" and status == b"400"), (size, answer[:200])


def test_the_admitted_limit_counts_only_requests_that_fully_arrived(tiny_checkpoint):
    import threading

    import numpy as np

    from serve_helpers import encode

    # A lone request waits ~1.5 s in the micro-batcher: one admitted request held open.
    app = create_app(tiny_checkpoint, ServeSettings(max_wait_ms=1500, max_batch_size=64))
    with GuardedServer(app, max_requests=1) as srv, SlowClients(srv.port, 10), SlowClients(srv.port, 10, body=True):
        time.sleep(0.3)
        assert httpx.get(srv.url + "/healthz", timeout=3).status_code == 200  # 20 pending, 0 admitted
        files = [("files", ("a.jpg", encode(np.zeros((32, 32, 3), np.uint8)), "image/jpeg"))]
        slow = threading.Thread(target=httpx.post, args=(srv.url + "/v1/score",), kwargs={"files": files, "timeout": 10})
        slow.start()
        time.sleep(0.5)
        r = httpx.get(srv.url + "/healthz", timeout=3)
        slow.join(10)
        assert r.status_code == 503 and r.json()["error"] == "overloaded" and r.headers["connection"] == "close"
        assert httpx.get(srv.url + "/healthz", timeout=3).status_code == 200
