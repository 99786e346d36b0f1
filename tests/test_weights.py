"""Named weights: cache dir, resumable atomic download, checksum, offline message (loopback only)."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from iipa import PopularityNet, WeightsError, load_model, make_scorer, save_checkpoint
from iipa.model.weights import (
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
    assert make_scorer("test-tiny", num_workers=0).record.arch == "tiny"


def test_offline_message_says_which_file_to_put_where(tmp_path):
    entry = register_weights(NamedWeights("test-offline", "offline.pth", "http://127.0.0.1:9/offline.pth",
                                          "resnet50", "authors", homepage="https://example.org/release"),
                             replace=True)
    with pytest.raises(WeightsError) as exc:
        resolve_weights("test-offline", retries=0)
    text = str(exc.value)
    assert "offline.pth" in text and str(weights_path(entry)) in text and "IIPA_HOME" in text


def _plain_state_file(tmp_path, name):
    """A plain (non-iipa) state dict of the tiny backbone, as another group might release."""
    torch.manual_seed(3)
    path = tmp_path / name
    torch.save({"module." + k: v for k, v in PopularityNet("tiny").net.state_dict().items()}, path)
    return path


def test_registered_plain_state_dict_gets_the_entrys_profile_and_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "home"))
    entry = register_weights(NamedWeights("test-plain", "plain.pth", "http://127.0.0.1:9/plain.pth", "tiny",
                                          "efficientnet-small", reference={"mean": 1.0, "std": 2.0},
                                          format="state_dict", domain="real"), replace=True)
    target = weights_path(entry)
    target.parent.mkdir(parents=True)
    target.write_bytes(_plain_state_file(tmp_path, "p.pth").read_bytes())
    model = load_model("test-plain", download=False)
    # The entry decides: not the authors' profile a shape-sniffer would have guessed.
    assert model.arch == "tiny" and model.profile.name == "efficientnet-small"
    assert model.reference == {"mean": 1.0, "std": 2.0} and model.info["weights"] == "test-plain"
    assert model.info["domain"] == "real"


def test_packaged_weights_load_without_network(tmp_path, monkeypatch):
    from iipa.model import weights

    package_dir = tmp_path / "pkg" / "iipa"
    save_checkpoint(PopularityNet("tiny"), package_dir / "assets" / "shipped.pt")
    monkeypatch.setattr(weights, "package_root", lambda: package_dir)
    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "home"))
    entry = register_weights(NamedWeights("test-packaged", "shipped.pt", "", "tiny", "small",
                                          package_file="assets/shipped.pt"), replace=True)
    assert weights_path(entry).is_file()
    model = load_model("test-packaged", download=False)
    assert model.arch == "tiny" and model.info["weights"] == "test-packaged"
    assert not (tmp_path / "home").exists(), "packaged weights need no cache dir"


def test_registered_weights_of_another_arch_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "home"))
    entry = register_weights(NamedWeights("test-wrong-arch", "w.pt", "http://127.0.0.1:9/w.pt", "resnet18",
                                          "paper"), replace=True)
    save_checkpoint(PopularityNet("tiny"), weights_path(entry))
    with pytest.raises(WeightsError, match="registered as resnet18 with profile paper"):
        load_model("test-wrong-arch", download=False)


def test_weights_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, iipa.model.weights as w; w.list_weights(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_weights_load_alike_by_name_and_by_path():
    from iipa.model.weights import DEFAULT_MODEL, get_weights

    entry = get_weights(DEFAULT_MODEL)
    assert entry.packaged and entry.domain == "real"
    by_name, by_path = load_model(DEFAULT_MODEL, download=False), load_model(weights_path(entry))
    # the checkpoint's own profile (decode mode included) wins over the registered default
    assert by_name.profile == by_path.profile and by_name.reference == by_path.reference
