"""Simulated images: deterministic, lazily rendered, and their pixels show the true popularity."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from iipa.errors import IIPAError
from iipa.simulate import (
    SimConfig,
    render_image,
    render_images,
    render_post,
    simulate,
    visible_statistics,
)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return simulate(SimConfig(users=20, posts_per_user=10, seed=5))[1]


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_rendering_is_deterministic(truth):
    row = truth.iloc[0]
    a, b = render_image(row, size=64), render_image(row.to_dict(), size=64)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes() and _jpeg(a) == _jpeg(b)
    other = row.copy()
    other["texture_seed"] += 1
    assert render_image(other, size=64).tobytes() != a.tobytes()


def test_same_seed_same_image_files(tmp_path):
    ids, t1 = (lambda p, t: (p["post_id"].head(6).tolist(), t))(*simulate(SimConfig(users=10, seed=9)))
    t2 = simulate(SimConfig(users=10, seed=9))[1]
    first = render_images(ids, t1, tmp_path / "a", size=48)
    second = render_images(ids, t2, tmp_path / "b", size=48)
    assert [p.name for p in first] == [f"{i}.jpg" for i in ids]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    t3 = simulate(SimConfig(users=10, seed=10))[1]
    third = render_images(t3["post_id"].head(6), t3, tmp_path / "c", size=48)
    assert [p.read_bytes() for p in third] != [p.read_bytes() for p in first]


def test_pixels_track_the_latents_and_the_true_popularity():
    truth = simulate(SimConfig(users=30, posts_per_user=8, seed=1))[1].head(160)
    stats = pd.DataFrame([visible_statistics(render_image(row, size=64)) for _, row in truth.iterrows()])
    for name in ("colourfulness", "contrast", "sharpness"):
        rho = spearmanr(stats[name], truth[name]).statistic
        assert rho > 0.55, (name, rho)
    # three pixel statistics, standardised and summed, already rank posts like the truth
    z = ((stats - stats.mean()) / stats.std()).sum(axis=1)
    assert spearmanr(z, truth["intrinsic"]).statistic > 0.6
    # an empty background looks flatter than a scene with a salient subject of the same style
    row = truth.iloc[0].copy()
    row[["colourfulness", "contrast", "sharpness"]] = 0.7
    with_subject, empty = row.copy(), row.copy()
    with_subject["subject"], empty["subject"] = 0.9, 0.0
    spread = [np.asarray(render_image(r, size=64), np.float32).std() for r in (with_subject, empty)]
    assert spread[0] > spread[1] * 1.2


def test_render_images_reuses_files_of_the_right_size(tmp_path, truth):
    ids = truth["post_id"].head(3).tolist()
    paths = render_images(ids + ids[:1], truth, tmp_path, size=32)      # duplicates rendered once
    assert len(paths) == 3 and all(Image.open(p).size == (32, 32) for p in paths)
    stamp = paths[0].stat().st_mtime_ns
    os.utime(paths[0], ns=(stamp - 10**9, stamp - 10**9))
    render_images(ids, truth, tmp_path, size=32)
    assert paths[0].stat().st_mtime_ns == stamp - 10**9                   # kept
    render_images(ids, truth, tmp_path, size=40)
    assert Image.open(paths[0]).size == (40, 40)                          # wrong size: redrawn
    assert not list(tmp_path.glob(".*.tmp"))


def test_render_post_matches_render_image(truth, tmp_path):
    pid = truth["post_id"].iloc[4]
    assert render_post(pid, truth, size=40).tobytes() == render_image(truth.iloc[4], size=40).tobytes()
    with pytest.raises(IIPAError, match="not in the simulation's truth table"):
        render_images(["no-such-post"], truth, tmp_path / "x", size=32)
    assert not (tmp_path / "x").exists()


def test_render_images_from_a_truth_file(tmp_path):
    from iipa.simulate import write_crawl

    files = write_crawl(tmp_path / "sim", SimConfig(users=8, seed=2))
    posts = pd.read_parquet(files.posts)
    ids = posts["post_id"].iloc[[7, 2]].tolist()
    paths = render_images(ids, files.truth, tmp_path / "img", size=32)
    truth = pd.read_parquet(files.truth).set_index("post_id")
    assert [p.stem for p in paths] == ids
    assert paths[0].read_bytes() == _jpeg(render_image(truth.loc[ids[0]], size=32))   # same JPEG settings
    assert render_images([], files.truth, tmp_path / "none", size=32) == []
