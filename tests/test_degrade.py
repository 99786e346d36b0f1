"""Synthetic quality pairs (iipa.train.degrade): seeded, same size, visibly worse."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from iipa.train.degrade import KINDS, degrade, write_degraded, write_flat_frames


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:160]
    arr = ((np.sin(x / 3.0) * 60 + 128 + rng.normal(0, 20, (120, 160)))[..., None] * np.ones(3)).clip(0, 255)
    path = tmp_path / "p.png"
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _sharpness(img: Image.Image) -> float:
    a = np.asarray(img.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(a, axis=1)).mean())


@pytest.mark.parametrize("kind", KINDS)
def test_each_degradation_keeps_the_size_and_loses_detail_or_light(photo, kind):
    img = Image.open(photo).convert("RGB")
    out = degrade(img, kind, random.Random(1))
    assert out.size == img.size and out.mode == "RGB"
    if kind == "dark":
        assert np.asarray(out).mean() < 0.5 * np.asarray(img).mean()
    else:
        assert _sharpness(out) < 0.8 * _sharpness(img) or kind == "jpeg"
        assert not np.array_equal(np.asarray(out), np.asarray(img))


def test_unknown_degradation_names_the_known_ones(photo):
    with pytest.raises(ValueError, match="blur, dark, jpeg, thumb"):
        degrade(Image.open(photo), "sepia", random.Random(0))


def test_copies_are_seeded_files_and_unreadable_originals_are_left_out(photo, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    a = write_degraded([str(photo), str(bad)], tmp_path / "a", per_image=4, seed=3)
    b = write_degraded([str(photo), str(bad)], tmp_path / "b", per_image=4, seed=3)
    assert [k for _, _, k in a] == list(KINDS)
    assert all(orig == str(photo) for orig, _, _ in a)
    assert [open(x, "rb").read() for _, x, _ in a] == [open(x, "rb").read() for _, x, _ in b]
    frames = write_flat_frames(tmp_path / "flat")
    assert np.asarray(Image.open(frames["black"])).max() == 0
