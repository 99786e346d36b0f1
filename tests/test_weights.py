"""Named weights: cache dir, resumable atomic download, checksum, offline message (loopback only)."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from iipa import PopularityNet, Scorer, WeightsError, load_model, save_checkpoint
from iipa.weights import (
    NamedWeights,
    download_file,
    register_weights,
    resolve_weights,
    weights_path,
)


class _Server:
    """Serves ``payload`` at /file; ``mode`` makes it misbehave."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.mode = "ok"
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path != "/file":
                    self.send_error(404)
                    return
                body, status = outer.payload, 200
                rng = self.headers.get("Range")
                if rng and outer.mode != "no-range":
                    start = int(rng.split("=")[1].split("-")[0])
                    body, status = outer.payload[start:], 206
                if outer.mode == "html":
                    body = b"<!DOCTYPE html><html><body>sign in</body></html>"
                if outer.mode == "corrupt":
                    body = bytes(b ^ 0xFF for b in body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "cut-once":  # send half, then drop the connection
                    outer.mode = "ok"
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(PopularityNet("tiny"), tmp_path / "src.pt")
    srv = _Server(ckpt.read_bytes())
    yield srv
    srv.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_checksum_and_writes_atomically(server, tmp_path):
    dest = download_file(server.url, tmp_path / "w" / "m.pt", sha256=_sha(server.payload))
    assert dest.read_bytes() == server.payload
    assert not (tmp_path / "w" / "m.pt.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.mode = "cut-once"
    dest = download_file(server.url, tmp_path / "m.pt", sha256=_sha(server.payload), backoff=0)
    assert dest.read_bytes() == server.payload
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] == f"bytes={len(server.payload) // 2}-"


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "m.pt.part").write_bytes(b"stale bytes from another file")
    server.mode = "no-range"
    dest = download_file(server.url, tmp_path / "m.pt", sha256=_sha(server.payload))
    assert dest.read_bytes() == server.payload


def test_corrupt_download_is_rejected_and_removed(server, tmp_path):
    server.mode = "corrupt"
    with pytest.raises(WeightsError, match="checksum mismatch"):
        download_file(server.url, tmp_path / "m.pt", sha256=_sha(server.payload))
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.part").exists()


def test_html_answer_is_not_taken_for_weights(server, tmp_path):
    server.mode = "html"
    with pytest.raises(WeightsError, match="HTML page"):
        download_file(server.url, tmp_path / "m.pt")


def test_named_weights_download_once_then_load_from_cache(server):
    entry = register_weights(NamedWeights("test-tiny", "test-tiny.pt", server.url, "tiny", "small",
                                          sha256=_sha(server.payload)), replace=True)
    model = load_model("test-tiny")
    assert model.arch == "tiny" and weights_path(entry).is_file()
    n = len(server.requests)
    load_model("test-tiny")
    assert len(server.requests) == n  # served from the cache dir
    assert Scorer("test-tiny", num_workers=0).model.arch == "tiny"


def test_offline_message_says_which_file_to_put_where(tmp_path):
    entry = register_weights(NamedWeights("test-offline", "offline.pth", "http://127.0.0.1:9/offline.pth",
                                          "resnet50", "authors", homepage="https://example.org/release"),
                             replace=True)
    with pytest.raises(WeightsError) as exc:
        resolve_weights("test-offline", retries=0)
    text = str(exc.value)
    assert "offline.pth" in text and str(weights_path(entry)) in text and "IIPA_HOME" in text
