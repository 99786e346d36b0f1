"""Graceful shutdown: SIGTERM lets a request in flight finish before the server exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from serve_helpers import encode, free_port


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(tiny_checkpoint, photos):
    port = free_port()
    # A long micro-batch wait keeps a lone request in flight for ~2 s: long enough to
    # send SIGTERM while it waits, with no test-only hook in the server.
    cmd = [sys.executable, "-m", "iipa", "serve", "--model", str(tiny_checkpoint), "--port", str(port),
           "--max-wait-ms", "2000", "--max-batch-size", "64", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not come up"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        result: dict = {}

        def slow_request():
            files = [("files", ("c.jpg", encode(photos["coffee"]), "image/jpeg"))]
            result["response"] = httpx.post(url + "/v1/score", files=files, timeout=30)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.8)  # the request is now waiting in the micro-batcher
        assert "response" not in result, "the request finished before shutdown began; test is void"
        proc.send_signal(signal.SIGTERM)
        client.join(30)
        response = result["response"]
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["score"] is not None
        # uvicorn re-raises the signal once it has shut down cleanly, so -SIGTERM is a clean exit.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        output = proc.stdout.read()
        assert "Traceback" not in output, output
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
