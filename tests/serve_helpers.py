"""Shared helpers for the scoring-service tests: encoded images, free ports, a live server."""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
from PIL import Image


def encode(arr: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread (bounded start/stop waits)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)


class GuardedServer:
    """An app served as ``iipa serve`` and ``iipa study serve`` serve it (iipa.httpserver's
    protocol and limits), on 127.0.0.1 in a background thread; ``ledger`` shows its counts."""

    def __init__(self, app, **limits) -> None:
        import uvicorn

        from iipa.httpserver import listen, server_config

        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = server_config(app, host="127.0.0.1", port=self.port, log_level="warning", **limits)
        self.ledger = config.ledger
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> GuardedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


class SlowClients:
    """``n`` hostile clients in one thread: each sends part of a request head (or a head and
    part of a body), then one byte every ``every_s``, and reconnects as soon as it is dropped."""

    def __init__(self, port: int, n: int, *, body: bool = False, every_s: float = 0.2) -> None:
        self.port, self.n, self.body, self.every_s = port, n, body, every_s
        self.connects = self.drops = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setblocking(False)
        head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 100000\r\n\r\n--b\r\n") if self.body else b"GET / HTTP/1.1\r\nHost: x\r\n"
        s.send(head)
        self.connects += 1
        return s

    def _run(self) -> None:
        socks = [self._open() for _ in range(self.n)]
        while not self._stop.wait(self.every_s):
            for i, s in enumerate(socks):
                try:
                    if s.recv(65536) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.drops += 1
                    s.close()
                    socks[i] = s = self._open()
                try:
                    s.send(b"x" if self.body else b"X")
                except OSError:
                    pass
        for s in socks:
            s.close()

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
