"""The service scores through the same Scorer as `iipa score`: same views (multi-crop
included), same backend, no torch for the default model; heatmaps from the torch weights
on first use, or 501 with the reason where they cannot be had."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from iipa import make_scorer, resolve_model
from iipa.serve import ServeSettings, create_app

TOL = 1e-4


def _post_scores(client: TestClient, paths, **params) -> list[float]:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    resp = client.post("/v1/score", files=files, params=params)
    assert resp.status_code == 200, resp.text
    return [r["score"] for r in resp.json()["results"]]


@pytest.mark.parametrize("crops", [1, 5])
def test_default_model_service_equals_iipa_score(photo_dir, crops):
    paths = sorted(photo_dir.glob("*.jpg"))
    expected = make_scorer(device="cpu", crops=crops, num_workers=0).score(paths)
    with TestClient(create_app(None, device="cpu", crops=crops)) as client:  # `iipa serve --crops N`
        card = client.get("/v1/model").json()
        assert card["runtime"] == "onnx" and card["crops"] == crops
        got = _post_scores(client, paths)
    assert np.abs(np.array(got) - np.array(expected)).max() <= TOL


def test_request_crops_override_the_servers(tiny_checkpoint, photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))[:2]
    expected = make_scorer(tiny_checkpoint, crops=10, num_workers=0).score(paths)
    with TestClient(create_app(tiny_checkpoint)) as client:
        assert np.abs(np.array(_post_scores(client, paths, crops=10)) - np.array(expected)).max() <= TOL
        bad = client.post("/v1/score", params={"crops": 3},
                          files=[("files", ("a.jpg", paths[0].read_bytes(), "image/jpeg"))])
        assert bad.status_code == 422 and "crops" in bad.text


def test_serving_the_default_model_imports_no_torch(photo_dir):
    code = (
        "import sys, json\n"
        "from fastapi.testclient import TestClient\n"
        "from iipa.serve import create_app\n"
        "with TestClient(create_app(None, device='cpu')) as c:\n"
        f"    r = c.post('/v1/score', files=[('files', ('c.jpg', open({str(photo_dir / 'coffee.jpg')!r}, 'rb').read()))])\n"
        "    card = c.get('/v1/model').json()\n"
        "print(json.dumps({'status': r.status_code, 'torch': sorted(m for m in sys.modules if m.split('.')[0] == 'torch'),\n"
        "                  'heatmaps': card['heatmaps']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == 200 and report["torch"] == [], report["torch"][:3]
    assert report["heatmaps"] == {"available": True, "reason": None}  # torch is installed here


def test_default_model_explains_from_its_torch_weights(photo_dir):
    path = photo_dir / "coffee.jpg"
    with TestClient(create_app(None, device="cpu")) as client:
        (score,) = _post_scores(client, [path])
        resp = client.post("/v1/explain", files=[("file", (path.name, path.read_bytes(), "image/jpeg"))])
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert abs(float(resp.headers["X-IIPA-Score"]) - score) <= 1e-5


def test_onnx_only_model_answers_501_with_the_reason(tmp_path, tiny_checkpoint, photo_dir):
    from iipa.model.export import export_onnx

    onnx = export_onnx(resolve_model(tiny_checkpoint).load_torch(), tmp_path / "tiny.onnx")
    path = photo_dir / "coffee.jpg"
    with TestClient(create_app(onnx, ServeSettings())) as client:
        card = client.get("/v1/model").json()
        resp = client.post("/v1/explain", files=[("file", (path.name, path.read_bytes(), "image/jpeg"))])
    assert card["heatmaps"]["available"] is False and "no PyTorch weights" in card["heatmaps"]["reason"]
    assert resp.status_code == 501 and resp.json()["detail"] == card["heatmaps"]["reason"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_iipa_serve_command_with_the_default_model_loads_no_torch(photo_dir):
    import time

    import httpx

    from serve_helpers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "iipa", "serve", "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "iipa serve did not start"
            time.sleep(0.3)
        path = photo_dir / "coffee.jpg"
        resp = httpx.post(url + "/v1/score", files=[("files", (path.name, path.read_bytes(), "image/jpeg"))],
                          timeout=30)
        assert resp.status_code == 200, resp.text
        with open(f"/proc/{proc.pid}/maps") as fh:
            libs = {line.split()[-1] for line in fh if "torch" in line}
        assert not libs, sorted(libs)[:3]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
