"""The study's images leak nothing: no header or URL of a trial orders its two sides
better than chance, even when the source files do (all more popular files written first,
as ``iipa fetch`` and ``simulate --render-pairs`` write them, and in another format)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from iipa.study import Store, create_study
from iipa.study.app import create_app
from iipa.study.plan import left_slot
from iipa.study.storage import Pair, Stimulus

DEMO = {"consent": True, "gender": "female", "age_band": "20-29", "instagram": True, "social_over_3h": False}
N_TRIALS = 200


def _smooth_image(rng: np.random.Generator) -> Image.Image:
    # Smooth content survives JPEG almost unchanged, so re-encoded sizes depend on content
    # drawn from one distribution for both sides, not on the source format.
    small = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
    side = int(rng.integers(160, 320))
    return small.resize((side, int(side * rng.uniform(0.8, 1.25))), Image.BICUBIC)


def write_leaky_images(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """All more popular images first (earlier mtimes), as PNG; the less popular as JPEG."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir()
    rows = [{"high_id": f"H{i:04d}", "low_id": f"L{i:04d}", "user_id": "u", "p": 0.97, "delta_s": 1.0,
             "delta_t_days": 1.0, "split": "test"} for i in range(n)]
    t0 = 1_700_000_000
    for k, row in enumerate(rows):
        path = images / f"{row['high_id']}.png"
        _smooth_image(rng).save(path)
        os.utime(path, (t0 + k, t0 + k))
    for k, row in enumerate(rows):
        path = images / f"{row['low_id']}.jpg"
        _smooth_image(rng).save(path, quality=97)
        os.utime(path, (t0 + n + k, t0 + n + k))
    pairs = folder / "pairs.csv"
    pd.DataFrame(rows).to_csv(pairs, index=False)
    return pairs, images


@pytest.fixture(scope="module")
def leaky_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leaky")
    pairs, images = write_leaky_images(folder, N_TRIALS + 8)
    store = Store(str(folder / "study.sqlite"), create=True)
    create_study(store, pairs, images, n=N_TRIALS, training=2, attention=4, seed=3)
    return store, images


def _order_accuracy(values: list[tuple[str, str]], high_is_left: list[bool]) -> tuple[float, int]:
    """How often "the side with the larger value is the more popular" is right, over the
    trials where the two values differ (numbers compared as numbers)."""
    def key(v: str):
        try:
            return (0, float(v), "")
        except ValueError:
            return (1, 0.0, v)

    hits = n = 0
    for (left, right), truth in zip(values, high_is_left, strict=True):
        if left == right:
            continue
        n += 1
        hits += (key(left) > key(right)) == truth
    return (hits / n if n else 0.5), n


def test_no_header_or_url_orders_the_sides_better_than_chance(leaky_study):
    store, images = leaky_study
    with store.session() as s:
        pairs = {p.id: p for p in s.scalars(select(Pair))}
        secret = store.study(s).secret
    with TestClient(create_app(store, admin_token="x" * 12)) as client:
        r = client.post("/api/participants", json=DEMO)
        code, item = r.json()["code"], r.json()["next"]
        headers: dict[str, list[tuple[str, str]]] = {}
        urls: list[tuple[str, str]] = []
        truth: list[bool] = []
        src_mtime: list[tuple[str, str]] = []
        while item["state"] != "done":
            pair = pairs[item["pair_id"]]
            if item["state"] == "trial" and pair.kind == "trial":
                got = {side: client.get(item[side]) for side in ("left", "right")}
                assert all(g.status_code == 200 for g in got.values())
                left = left_slot(secret, code, pair.id)
                truth.append(pair.high_slot == left)
                urls.append((item["left"], item["right"]))
                for name in set(got["left"].headers) | set(got["right"].headers):
                    if name != "date":
                        headers.setdefault(name, []).append((got["left"].headers.get(name, ""),
                                                             got["right"].headers.get(name, "")))
                paths = (pair.slot_path(left), pair.slot_path("b" if left == "a" else "a"))
                src_mtime.append(tuple(str(-os.stat(p).st_mtime) for p in paths))
                for g in got.values():
                    assert g.headers["content-type"] == "image/jpeg"
                    assert g.headers["cache-control"] == "no-store"
                    assert "last-modified" not in g.headers and "etag" not in g.headers
                    with Image.open(io.BytesIO(g.content)) as im:
                        assert (im.format, im.size) == ("JPEG", (512, 512)) and not im.info.get("exif")
            r = client.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "left",
                                                            "response_ms": 10})
            item = r.json()["next"]
    assert len(truth) == N_TRIALS
    # The sources are leaky: the older file is the more popular one in every trial.
    assert _order_accuracy(src_mtime, truth) == (1.0, N_TRIALS)
    bound = 0.5 + 3 * math.sqrt(0.25 / N_TRIALS)  # 3 sigma of a fair coin
    for name, values in headers.items():
        acc, n = _order_accuracy(values, truth)
        assert n == 0 or 1 - bound < acc < bound, f"header {name}: orders {acc:.0%} of {n} trials"
    acc, _ = _order_accuracy(urls, truth)
    assert 1 - bound < acc < bound, f"URLs order {acc:.0%} of the trials"
    assert 1 - bound < sum(truth) / len(truth) < bound  # "left" itself says nothing
    for left, right in urls:
        assert left.endswith("/left") and right.endswith("/right") and code in left


def test_images_only_for_own_current_or_answered_pairs(leaky_study):
    store, _ = leaky_study
    with TestClient(create_app(store, admin_token="x" * 12)) as client:
        a = client.post("/api/participants", json=DEMO).json()
        b = client.post("/api/participants", json=DEMO).json()
        first = a["next"]["pair_id"]
        assert client.get(a["next"]["left"]).status_code == 200
        with store.session() as s:
            later = max(s.scalars(select(Pair.id)))
        assert client.get(f"/api/p/{a['code']}/image/{later}/left").status_code == 404  # not yet shown
        client.post(f"/api/p/{a['code']}/answers", json={"pair_id": first, "side": "left", "response_ms": 1})
        assert client.get(f"/api/p/{a['code']}/image/{first}/right").status_code == 200  # answered
        if b["next"]["pair_id"] != first:
            assert client.get(f"/api/p/{b['code']}/image/{first}/left").status_code == 404
        assert client.get(f"/api/p/AAAAAAAAAA/image/{first}/left").status_code == 404
        assert client.get(f"/api/image/{first}/a").status_code == 404  # the old open route is gone
        for bad in (0, -1, 2**31, 2**63, 10**30):
            r = client.get(f"/api/p/{a['code']}/image/{bad}/left")
            assert 400 <= r.status_code < 500, (bad, r.status_code)
            r = client.post(f"/api/p/{a['code']}/answers", json={"pair_id": bad, "side": "left", "response_ms": 1})
            assert 400 <= r.status_code < 500, (bad, r.status_code)
        assert client.get(f"/api/p/{a['code']}/image/{first}/up").status_code == 422


def test_attention_decoys_are_encoded_like_the_photos(leaky_study):
    store, _ = leaky_study
    with store.session() as s:
        att = s.scalars(select(Pair).where(Pair.kind == "attention")).all()
        for p in att:
            sides = [s.get(Stimulus, (p.id, slot)).data for slot in ("a", "b")]
            for data in sides:
                with Image.open(io.BytesIO(data)) as im:
                    assert (im.format, im.size, im.mode) == ("JPEG", (512, 512), "RGB")
    assert len(att) == 4
