"""`iipa fetch` against a loopback server: images, 404s, slow and flaky responses, truncated
bodies, HTML pages and garbage; resumability and atomic writes."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iipa.pairs.fetch import fetch_images, items_from_table
from iipa.pairs.table import write_pairs


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


JPEG, PNG = _jpeg(), _png()


class Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code, body, ctype="image/jpeg", length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        kind = self.path.strip("/").split("/")[0]
        Handler.hits[self.path] += 1
        n = Handler.hits[self.path]
        if kind == "img":
            self._send(200, JPEG)
        elif kind == "png":
            self._send(200, PNG, "image/png")
        elif kind == "missing":
            self._send(404, b"not found", "text/plain")
        elif kind == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Log in</body></html>", "text/html; charset=utf-8")
        elif kind == "disguised":  # an HTML page served as an image
            self._send(200, b"  <!doctype html><html>login</html>", "image/jpeg")
        elif kind == "garbage":
            self._send(200, bytes(range(256)) * 4)
        elif kind == "flaky":  # 503 twice, then the image
            self._send(503, b"busy", "text/plain") if n <= 2 else self._send(200, JPEG)
        elif kind == "slow":  # too slow the first time, fine afterwards
            if n == 1:
                time.sleep(SLOW_S)
            self._send(200, JPEG)
        elif kind == "cut":  # the connection closes before Content-Length bytes
            self._send(200, JPEG[: len(JPEG) // 2], length=len(JPEG))
        elif kind == "truncated":  # consistent headers, but the JPEG itself stops half-way
            self._send(200, JPEG[: len(JPEG) // 2])
        elif kind == "to-file":  # a redirect off the web, to a local file
            self.send_response(302)
            self.send_header("Location", "file://" + self.path.split("/", 2)[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(500, b"?", "text/plain")


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients that time out break the pipe
        pass


@pytest.fixture
def server():
    Handler.hits = Counter()
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


# The client's read timeout, and how long the "slow" response stalls the first time. A loopback
# answer of a few KB takes milliseconds; TIMEOUT_S leaves a loaded 2-vCPU machine more than a
# second of scheduling delay before a fast answer counts as slow (and each item is tried 3 times),
# and the stall outlasts the timeout by 3.5 s, so it always times out. The wait costs TIMEOUT_S.
TIMEOUT_S, SLOW_S = 1.5, 5.0
KINDS = {"img": "ok", "png": "ok", "missing": "dead", "html": "dead", "disguised": "dead", "garbage": "dead",
         "flaky": "ok", "slow": "ok", "cut": "failed", "truncated": "failed"}


def test_every_kind_of_response(server, tmp_path):
    items = [(f"id_{k}", f"{server}/{k}/x") for k in KINDS]
    summary = fetch_images(items, tmp_path / "images", workers=4, retries=2, backoff=0.01, timeout=TIMEOUT_S)
    got = {o.post_id[3:]: o.status for o in summary.outcomes}
    assert got == KINDS
    files = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert files == ["fetch_report.csv", "id_flaky.jpg", "id_img.jpg", "id_png.png", "id_slow.jpg"]  # no .part left
    assert (tmp_path / "images" / "id_img.jpg").read_bytes() == JPEG
    assert Handler.hits["/missing/x"] == 1, "a 404 is not retried"
    assert Handler.hits["/cut/x"] == 3, "a cut body is retried"
    report = pd.read_csv(tmp_path / "images" / "fetch_report.csv")
    assert set(report["post_id"]) == {f"id_{k}" for k, v in KINDS.items() if v != "ok"}
    assert "HTTP 404" in report.set_index("post_id").loc["id_missing", "error"]
    # resumable: a second run downloads nothing that is already there
    before = sum(Handler.hits.values())
    again = fetch_images(items[:2], tmp_path / "images", backoff=0.01)
    assert [o.status for o in again.outcomes] == ["cached", "cached"]
    assert sum(Handler.hits.values()) == before


def test_cli_fetches_a_pairs_table_with_a_template(server, tmp_path, run_cli):
    pairs = pd.DataFrame({"high_id": ["a1", "a2"], "low_id": ["b1", "gone"]})
    write_pairs(pairs, tmp_path / "pairs.parquet")
    code, out, err = run_cli("fetch", tmp_path / "pairs.parquet", "--out", tmp_path / "img", "--backoff", "0.01",
                             "--url-template", server + "/img/{post_id}")
    assert code == 0, err
    assert sorted(p.stem for p in (tmp_path / "img").glob("*.jpg")) == ["a1", "a2", "b1", "gone"]
    posts = pd.DataFrame({"post_id": ["a1", "c9"], "image_url": [server + "/img/a", server + "/missing/c"]})
    posts.to_csv(tmp_path / "posts.csv", index=False)
    code, out, err = run_cli("fetch", tmp_path / "posts.csv", "--out", tmp_path / "img", "--retries", "0")
    assert code == 1 and "c9: dead: HTTP 404" in err and "1 already there" in out


def test_urls_for_a_pairs_table_come_from_posts_then_the_template(tmp_path):
    write_pairs(pd.DataFrame({"high_id": ["a", "b"], "low_id": ["c", "a"]}), tmp_path / "pairs.parquet")
    pd.DataFrame({"post_id": ["a", "c", "z"], "image_url": ["http://h/a.jpg", None, "http://h/z.jpg"]}).to_json(
        tmp_path / "posts.jsonl", orient="records", lines=True)
    items = items_from_table(tmp_path / "pairs.parquet", posts=[str(tmp_path / "posts.jsonl")],
                             url_template="http://t/{post_id}")
    assert items == [("a", "http://h/a.jpg"), ("b", "http://t/b"), ("c", "http://t/c")]
    assert items_from_table(tmp_path / "pairs.parquet")[0] == ("a", None)


def test_only_http_and_https_urls_are_fetched(server, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(JPEG)  # a valid image: only the scheme check can keep it out
    items = [("local", secret.as_uri()), ("ftp", "ftp://127.0.0.1/x.jpg"), ("data", "data:image/jpeg;base64,AAAA"),
             ("bare", str(secret)), ("redirected", f"{server}/to-file{secret}"), ("web", f"{server}/img/1")]
    out = tmp_path / "images"
    summary = fetch_images(items, out, retries=0, timeout=5)
    by_id = {o.post_id: o for o in summary.outcomes}
    assert by_id["web"].status == "ok"
    for pid in ("local", "ftp", "data", "bare", "redirected"):
        assert by_id[pid].status == "dead" and "only http and https" in by_id[pid].error, by_id[pid]
    assert "file:" in by_id["local"].error and "redirect" in by_id["redirected"].error
    assert sorted(p.name for p in out.iterdir()) == ["fetch_report.csv", "web.jpg"]
    report = pd.read_csv(out / "fetch_report.csv")
    assert sorted(report.post_id) == ["bare", "data", "ftp", "local", "redirected"]
