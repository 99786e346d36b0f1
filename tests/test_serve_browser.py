"""The web page in headless Chromium: upload three photos, see them ranked by score."""

from __future__ import annotations

import os
import shutil

import pytest

from iipa.serve import ServeSettings, create_app
from serve_helpers import LiveServer

CHROMIUM = os.environ.get("IIPA_CHROMIUM", "/usr/bin/chromium")


def _require_playwright():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (CI=true: browser tests must run)")
        pytest.skip("playwright is not installed")
    expect.set_options(timeout=30_000)  # ends as soon as it holds; only bounds a failure on a loaded machine
    return expect, sync_playwright


def _launch(p, chromium: str):
    return p.chromium.launch(executable_path=chromium, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def _require_chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium not found at {CHROMIUM} (CI=true: browser tests must run)")
        pytest.skip(f"chromium not found at {CHROMIUM}")
    return path


@pytest.mark.slow
@pytest.mark.browser
def test_page_ranks_three_uploaded_photos(tiny_checkpoint, photo_dir):
    chromium = _require_chromium()
    expect, sync_playwright = _require_playwright()

    app = create_app(tiny_checkpoint, ServeSettings(max_wait_ms=5))
    paths = [photo_dir / f"{n}.jpg" for n in ("chelsea", "coffee", "rocket")]
    with LiveServer(app) as server, sync_playwright() as p:
        import httpx

        files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]
        expected = httpx.post(server.url + "/v1/score", files=files, timeout=30).json()["results"]
        expected.sort(key=lambda r: r["score"], reverse=True)

        browser = _launch(p, chromium)
        try:
            page = browser.new_page()
            external: list[str] = []
            page.on("request", lambda req: external.append(req.url)
                    if not req.url.startswith((server.url, "blob:", "data:")) else None)
            page.goto(server.url + "/")
            expect(page.locator("#model-info")).to_contain_text("tiny")
            page.set_input_files("#files", [str(path) for path in paths])
            items = page.locator("#ranking li.result")
            expect(items).to_have_count(3)
            names = items.evaluate_all("els => els.map(e => e.dataset.name)")
            scores = [float(s) for s in items.evaluate_all("els => els.map(e => e.dataset.score)")]
            assert names == [r["name"] for r in expected]
            assert scores == sorted(scores, reverse=True)
            for i, r in enumerate(expected):
                expect(items.nth(i).locator(".level")).to_have_text(r["level"])
            expect(page.locator("#status")).to_contain_text("3 image(s) ranked")
            # Heatmaps: hidden until toggled, then fetched from /v1/explain and shown.
            page.check("#show-heatmaps")
            expect(page.locator("#ranking img.heatmap.ready")).to_have_count(3, timeout=60_000)
            expect(page.locator("#ranking img.heatmap").first).to_be_visible()
            page.uncheck("#show-heatmaps")
            expect(page.locator("#ranking img.heatmap").first).to_be_hidden()
            assert external == [], f"the page fetched non-local resources: {external}"
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_page_hides_the_heatmap_box_with_the_reason_when_there_are_none(tiny_checkpoint, tmp_path):
    chromium = _require_chromium()
    expect, sync_playwright = _require_playwright()
    from iipa import resolve_model
    from iipa.model.export import export_onnx

    onnx = export_onnx(resolve_model(tiny_checkpoint).load_torch(), tmp_path / "tiny.onnx")
    with LiveServer(create_app(onnx, ServeSettings())) as server, sync_playwright() as p:
        browser = _launch(p, chromium)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            expect(page.locator("#heatmaps-off")).to_contain_text("no PyTorch weights")
            expect(page.locator("#heatmaps-box")).to_be_hidden()
        finally:
            browser.close()
