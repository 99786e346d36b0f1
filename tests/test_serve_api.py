"""In-process tests of every endpoint and every documented error of the scoring service."""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from iipa.scoring import make_scorer
from iipa.serve import ServeSettings, create_app
from serve_helpers import encode


@pytest.fixture(scope="module")
def app(tiny_checkpoint):
    return create_app(tiny_checkpoint, ServeSettings(max_wait_ms=5))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def jpegs(photos) -> dict[str, bytes]:
    return {name: encode(arr, quality=90) for name, arr in photos.items()}


def files_of(jpegs, *names):
    return [("files", (f"{n}.jpg", jpegs[n], "image/jpeg")) for n in names]


def assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if error is not None:
        assert body["error"] == error, body
    return body


def test_score_matches_library_scorer_and_levels(client, jpegs, tiny_checkpoint):
    names = ["chelsea", "coffee", "astronaut"]
    r = client.post("/v1/score", files=files_of(jpegs, *names))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["name"] for x in results] == [f"{n}.jpg" for n in names]
    expected = make_scorer(tiny_checkpoint, num_workers=0).score([jpegs[n] for n in names])
    got = [x["score"] for x in results]
    np.testing.assert_allclose(got, expected, atol=2e-2)
    from iipa import levels

    ref = {"mean": 0.0, "std": 1.0}
    for x in results:
        assert x["error"] is None
        assert x["level"] == levels.level(x["score"], ref)
        assert x["scaled"] == pytest.approx(levels.scaled_score(x["score"], ref))


def test_score_reports_bad_images_per_image(client, jpegs):
    files = files_of(jpegs, "chelsea") + [("files", ("notes.txt", b"not an image at all", "text/plain"))]
    r = client.post("/v1/score", files=files)
    assert r.status_code == 200
    good, bad = r.json()["results"]
    assert good["score"] is not None and good["error"] is None
    assert bad["score"] is None and bad["error"] == "not an image" and bad["status"] == 400


def test_filenames_are_labels_never_paths(client, jpegs, photo_dir):
    # A real image file's absolute path as the upload name, with non-image bytes: the service
    # must judge the bytes (400), not open the named file.
    real = str(photo_dir / "chelsea.jpg")
    r = client.post("/v1/score", files=[("files", (real, b"garbage bytes", "image/jpeg"))])
    body = assert_error(r, 400, "not an image")
    assert body["detail"].startswith("chelsea.jpg:")
    r = client.post("/v1/score", files=[("files", ("../../etc/passwd", jpegs["coffee"], "image/jpeg"))])
    assert r.json()["results"][0]["name"] == "passwd"


def test_compare_is_logistic_of_score_difference_and_antisymmetric(client, jpegs):
    a, b = jpegs["chelsea"], jpegs["rocket"]
    ab = client.post("/v1/compare", files={"image_a": ("a.jpg", a), "image_b": ("b.jpg", b)}).json()
    ba = client.post("/v1/compare", files={"image_a": ("b.jpg", b), "image_b": ("a.jpg", a)}).json()
    diff = ab["a"]["score"] - ab["b"]["score"]
    assert ab["probability_a"] == pytest.approx(1 / (1 + np.exp(-diff)))
    assert ab["probability_a"] + ba["probability_a"] == pytest.approx(1.0, abs=1e-6)


def test_compare_needs_both_images_and_rejects_a_bad_one(client, jpegs):
    body = assert_error(client.post("/v1/compare", files={"image_a": ("a.jpg", jpegs["coffee"])}), 422,
                        "validation error")
    assert any(d["loc"][-1] == "image_b" for d in body["detail"])
    assert_error(client.post("/v1/compare", files={"image_a": ("a.jpg", jpegs["coffee"]),
                                                   "image_b": ("b.jpg", b"\xff\xd8\xff junk")}), 400)


@pytest.mark.slow  # the first Grad-CAM imports grad-cam (sklearn, dynamo): ~10 s on 2 busy cores
def test_explain_returns_a_heatmap_png_of_the_image(client, jpegs, photos):
    r = client.post("/v1/explain", files={"file": ("a.jpg", jpegs["astronaut"])})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(r.content))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    h, w = photos["astronaut"].shape[:2]
    assert overlay.size == (w, h)
    assert not np.array_equal(np.asarray(overlay), photos["astronaut"])  # something was drawn
    score = client.post("/v1/score", files=files_of(jpegs, "astronaut")).json()["results"][0]
    assert float(r.headers["X-IIPA-Score"]) == pytest.approx(score["score"], abs=1e-4)
    assert r.headers["X-IIPA-Level"] == score["level"]
    assert_error(client.post("/v1/explain", files={"file": ("a.jpg", b"GIF89a broken")}), 400)


def test_model_card_describes_weights_profile_and_levels(client, tiny_checkpoint):
    card = client.get("/v1/model").json()
    assert card["arch"] == "tiny" and card["weights"] == tiny_checkpoint.name
    assert str(tiny_checkpoint.parent) not in str(card)  # no server-side paths
    assert card["profile"]["name"] == "small" and card["input_size"] == 64
    assert [lv["name"] for lv in card["levels"]] == ["poor", "bad", "fair", "good", "excellent"]
    assert card["level_edges"] == [-1.5, -0.5, 0.5, 1.5]
    assert card["levels"][0]["min_score"] is None and card["levels"][-1]["max_score"] is None
    assert card["reference"]["mean"] == 0.0


def test_healthz_openapi_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "model_worker": True}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/score", "/v1/compare", "/v1/explain", "/v1/model", "/healthz", "/metrics"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert not re.search(r"(src|href)=\"https?://|url\(https?:|import .* from \"https?:", text), asset
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/docs").status_code == 404  # Swagger UI would come from a CDN


def test_metrics_count_requests_images_and_batches(app, jpegs):
    with TestClient(app) as c:
        before = c.get("/metrics").text
        c.post("/v1/score", files=files_of(jpegs, "chelsea", "coffee"))
        c.post("/v1/score", files=[("files", ("x.txt", b"nope", "text/plain"))])
        text = c.get("/metrics").text

    def value(body: str, pattern: str) -> float:
        m = re.search("^" + re.escape(pattern) + r" ([0-9.e+]+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    ok = 'iipa_http_requests_total{method="POST",endpoint="/v1/score",status="200"}'
    bad = 'iipa_http_requests_total{method="POST",endpoint="/v1/score",status="400"}'
    assert value(text, ok) == value(before, ok) + 1
    assert value(text, bad) == value(before, bad) + 1
    assert value(text, "iipa_images_scored_total") == value(before, "iipa_images_scored_total") + 2
    assert value(text, "iipa_image_errors_total") == value(before, "iipa_image_errors_total") + 1
    assert value(text, 'iipa_batch_size_bucket{le="+Inf"}') >= 1
    assert 'iipa_http_request_duration_seconds_count{endpoint="/v1/score"}' in text
    assert "# TYPE iipa_http_request_duration_seconds histogram" in text


@pytest.mark.parametrize(("settings", "make", "status", "error"), [
    (dict(max_upload_bytes=10_000), lambda j: j["chelsea"], 413, "file too large"),
    (dict(max_upload_bytes=1000, max_files=1), lambda j: j["chelsea"] * 3, 413, "request too large"),
    (dict(max_pixels=64 * 64), lambda j: j["chelsea"], 413, "too many pixels"),
    (dict(), lambda j: encode(np.zeros((40, 40, 3), np.uint8), "GIF"), 415, "format not allowed"),
    (dict(allowed_formats=("PNG",)), lambda j: j["chelsea"], 415, "format not allowed"),
    (dict(), lambda j: j["chelsea"][: len(j["chelsea"]) // 2], 400, "undecodable image"),
    (dict(), lambda j: b"", 400, "empty file"),
    (dict(), lambda j: encode(np.zeros((2, 300, 3), np.uint8), "PNG"), 400, "extreme aspect ratio"),
])
def test_upload_limits(tiny_checkpoint, jpegs, settings, make, status, error):
    app = create_app(tiny_checkpoint, ServeSettings(**settings))
    with TestClient(app) as c:
        r = c.post("/v1/score", files=[("files", ("x.jpg", make(jpegs), "image/jpeg"))])
        assert_error(r, status, error)


def test_too_many_files_is_413(tiny_checkpoint, jpegs):
    with TestClient(create_app(tiny_checkpoint, ServeSettings(max_files=2))) as c:
        assert_error(c.post("/v1/score", files=files_of(jpegs, "chelsea", "coffee", "rocket")), 413,
                     "too many files")


def test_validation_and_malformed_bodies(client):
    assert_error(client.post("/v1/score"), 422, "validation error")
    assert_error(client.post("/v1/score", json={"files": "x"}), 422)
    r = client.post("/v1/score", content=b"--b\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code in (400, 422) and set(r.json()) == {"error", "detail"}
    assert_error(client.get("/v1/nowhere"), 404)
    assert_error(client.get("/v1/score"), 405)


def test_api_key(tiny_checkpoint, jpegs):
    with TestClient(create_app(tiny_checkpoint, ServeSettings(api_key="s3cret"))) as c:
        assert_error(c.get("/v1/model"), 401, "unauthorized")
        assert_error(c.get("/v1/model", headers={"X-API-Key": "wrong"}), 401)
        assert_error(c.post("/v1/score", files=files_of(jpegs, "coffee")), 401)
        assert_error(c.get("/metrics"), 401)
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def slow_scorer(checkpoint, delay: float = 0.6):
    """A real scorer whose model call takes ``delay`` seconds, to make requests overlap."""
    scorer = make_scorer(checkpoint, num_workers=0)
    backend = scorer.backend

    class Slow:
        name, device, precision = backend.name, backend.device, backend.precision

        def __call__(self, views):
            time.sleep(delay)
            return backend(views)

    scorer.backend = Slow()
    return scorer


def test_timeout_is_503(tiny_checkpoint, jpegs):
    app = create_app(slow_scorer(tiny_checkpoint), ServeSettings(request_timeout_s=0.2))
    with TestClient(app) as c:
        assert_error(c.post("/v1/score", files=files_of(jpegs, "coffee")), 503, "timeout")


def test_overload_is_503(tiny_checkpoint, jpegs):
    app = create_app(slow_scorer(tiny_checkpoint), ServeSettings(max_concurrency=1, max_queue=0))
    with TestClient(app) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/v1/score", files=files_of(jpegs, "coffee"))))
        t.start()
        deadline = time.monotonic() + 5
        while app.state.service.metrics.images_scored == 0 and app.state.service._admitted == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert_error(c.post("/v1/score", files=files_of(jpegs, "rocket")), 503, "overloaded")
        t.join(10)
        assert first["r"].status_code == 200


def test_chunked_body_over_the_limit_is_413_without_content_length(tiny_checkpoint):
    settings = ServeSettings(max_upload_bytes=1000, max_files=1)  # body limit: 1000 + 64 KiB

    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    with TestClient(create_app(tiny_checkpoint, settings)) as c:
        r = c.post("/v1/score", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413, "request too large")
