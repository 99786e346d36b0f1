"""Album report and histogram: sorting, self-containment, Chromium renders every image."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from iipa.report import album_html, build_album, fit_gaussian, score_histogram
from iipa.scoring import ScoreResult

CHROMIUM = "/usr/bin/chromium"


def test_fit_gaussian_is_the_maximum_likelihood_fit():
    rng = np.random.default_rng(0)
    scores = rng.normal(2.96, 1.55, 4000).tolist() + [float("nan")]
    fit = fit_gaussian(scores)
    assert fit["n"] == 4000
    assert fit["mean"] == pytest.approx(2.96, abs=0.1) and fit["std"] == pytest.approx(1.55, abs=0.1)
    assert fit_gaussian([1.0]) is None


def test_histogram_is_an_svg_with_bars_fit_and_level_edges():
    svg = score_histogram([0.1, 0.5, 0.4, -0.2, 1.0], reference={"mean": 0.0, "std": 1.0})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("viewBox") == "0 0 640 360"
    assert len(root.findall(f"{ns}polyline")) == 1  # the Gaussian
    assert len(root.findall(f"{ns}rect")) >= 2 + 3  # background, frame, bars
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "Gaussian fit: mean 0.36, std 0.451" in texts and "5 images" in texts
    assert {"fair", "good", "excellent"} <= set(texts) and "bad" not in texts  # edges inside the range (-1.5: not)
    assert {"0", "0.5", "1", "1.5"} <= set(texts)  # round ticks


def test_album_is_sorted_and_failed_last(photo_dir):
    paths = sorted(str(p) for p in photo_dir.glob("*.jpg"))
    results = [ScoreResult(p, s) for p, s in zip(paths, [0.5, 2.0, -1.0, 1.0], strict=True)]
    results.append(ScoreResult(str(photo_dir / "gone.jpg"), None, "not found"))
    entries = build_album(results, thumb_size=64)
    assert [e.result.score for e in entries] == [2.0, 1.0, 0.5, -1.0, None]
    assert all(max(Image.open(io.BytesIO(e.thumbnail)).size) == 64 for e in entries[:4])
    assert entries[-1].thumbnail is None
    page = album_html(entries, title="<x>")
    assert "&lt;x&gt;" in page and "not found" in page
    assert page.index(os.path.basename(paths[1])) < page.index(os.path.basename(paths[3]))


@pytest.fixture(scope="module")
def album(tmp_path_factory, tiny_checkpoint, photo_dir):
    """`iipa rank --report --heatmaps` run once (in-process) for the tests below."""
    from iipa.cli import main

    tmp = tmp_path_factory.mktemp("album")
    folder = tmp / "photos"
    shutil.copytree(photo_dir, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    report = tmp / "out" / "album.html"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["rank", str(folder), "--model", str(tiny_checkpoint), "--report", str(report),
                     "--heatmaps", "--format", "csv", "--workers", "0", "--thumb-size", "96"])
    out, err = out.getvalue(), err.getvalue()
    assert code == 1, err  # the broken file
    return report, list(csv.DictReader(io.StringIO(out))), err


def test_rank_cli_table_report_and_histogram(album):
    report, rows, err = album
    scores = [float(r["score"]) for r in rows if r["rank"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", ""]
    assert rows[-1]["path"].endswith("broken.jpg") and rows[-1]["error"]
    assert all(r["level"] in ("poor", "bad", "fair", "good", "excellent") for r in rows[:4])
    assert "fitted Gaussian" in err
    page = report.read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 2 * 4  # thumbnail and heatmap per scored image; the histogram is inline SVG
    assert page.count("<svg ") == 1
    assert all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r"https?://", page)  # nothing to fetch: opens offline
    hist = report.with_name("album.histogram.svg")
    assert ET.parse(hist).getroot().tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.browser
def test_report_renders_every_image_in_chromium(album, tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (required under CI)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    report, _, _ = album
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load", timeout=30_000)
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])")
            # the inline histogram is laid out as SVG (its namespace, a real box, its bars)
            hist = page.evaluate("(() => { const s = document.querySelector('figure.hist svg'); "
                                 "const r = s.getBoundingClientRect(); "
                                 "return [s.namespaceURI, r.width, r.height, s.querySelectorAll('rect').length]; })()")
            shot = tmp_path / "album.png"  # kept under tmp_path for a human to look at
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(images) == 8
    assert hist[0] == "http://www.w3.org/2000/svg" and hist[1] > 300 and hist[2] > 150 and hist[3] > 3, hist
    assert all(complete and w > 0 and h > 0 for complete, w, h, _ in images), images
    assert not [u for u in requests if not u.startswith(("file:", "data:"))]
    shot_img = Image.open(shot)
    assert shot_img.size[0] == 1000 and shot_img.size[1] >= 300
    assert not math.isclose(np.asarray(shot_img.convert("L")).std(), 0.0)


@pytest.fixture(scope="module")
def fitted_checkpoint(tmp_path_factory, photo_dir):
    """A tiny model whose reference is the Gaussian of its own scores on ``photo_dir``, so
    the level edges fall inside the album's histogram."""
    import torch

    from iipa import PopularityNet, make_scorer, save_checkpoint

    torch.manual_seed(0)
    model = PopularityNet("tiny")
    scores = make_scorer(model, num_workers=0).score(sorted(str(p) for p in photo_dir.glob("*.jpg")))
    model.reference = {**fit_gaussian(scores), "source": "its scores on the test photos"}
    return save_checkpoint(model, tmp_path_factory.mktemp("fitted") / "fitted.pt")


@pytest.mark.parametrize("heatmaps", [False, True])
def test_album_draws_level_edges_names_the_model_and_embeds_no_local_path(
        heatmaps, fitted_checkpoint, photo_dir, tmp_path, run_cli):
    folder = tmp_path / "holiday" / "day one"
    folder.mkdir(parents=True)
    for p in photo_dir.glob("*.jpg"):
        shutil.copy(p, folder / p.name)
    (folder / "sub").mkdir()
    shutil.copy(next(photo_dir.glob("*.jpg")), folder / "sub" / "copy.jpg")
    report = tmp_path / "album.html"
    code, _, err = run_cli("rank", str(folder), "--model", str(fitted_checkpoint), "--report", str(report),
                           "--workers", "0", "--thumb-size", "64", *(["--heatmaps"] if heatmaps else []))
    assert code == 0, err
    page = report.read_text()
    assert "Model: fitted.pt (tiny)" in page
    assert page.count("stroke-dasharray") >= 2 and ">fair<" in page and ">good<" in page  # dashed level edges
    assert str(tmp_path) not in page and str(fitted_checkpoint.parent) not in page
    names = re.findall(r'<div class="name">([^<]*)</div>', page)
    assert sorted(names) == sorted([p.name for p in photo_dir.glob("*.jpg")] + ["sub/copy.jpg"])
    assert ("heatmap" in page) == heatmaps


def test_shown_names_are_relative_to_the_common_folder(tmp_path):
    from iipa.report import shown_names

    assert shown_names([str(tmp_path / "a" / "x.jpg"), str(tmp_path / "a" / "b" / "y.jpg")]) == ["x.jpg", "b/y.jpg"]
    assert shown_names([str(tmp_path / "only.jpg")]) == ["only.jpg"]
    assert shown_names([]) == []
