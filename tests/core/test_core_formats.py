"""Photos as people have them, in the core install: HEIC (written by pillow-heif itself),
AVIF (Pillow's own plugin), and folder walks that name what they do not score."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _photo import synthetic_photo

from iipa.errors import ImageError
from iipa.images import open_image, register_heif_opener
from iipa.inputs import expand_inputs


def _close(a, b, tol: float = 6.0) -> bool:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()) < tol


@pytest.fixture
def heic(tmp_path):
    import pillow_heif  # a core dependency: missing is a failure, not a skip
    photo = synthetic_photo(1)
    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(photo).save(path, quality=95)
    return path, photo


def test_a_heic_from_pillow_heif_opens_as_the_picture_it_holds(heic):
    path, photo = heic
    img = open_image(path)
    assert img.mode == "RGB" and img.size == photo.size
    assert _close(img, photo), "the decoded HEIC is not the picture that was encoded"
    assert register_heif_opener() is True  # registered once, cached


def test_a_heic_bigger_than_the_limit_is_refused(heic):
    path, _ = heic
    with pytest.raises(ImageError, match="decompression bomb|too large|pixels"):
        open_image(path, max_pixels=1000)


def test_avif_opens_through_pillow(tmp_path):
    photo = synthetic_photo(2)
    path = tmp_path / "photo.avif"
    photo.save(path, quality=90)
    img = open_image(path)
    assert img.size == photo.size and _close(img, photo)


def test_a_heic_that_is_not_one_is_an_error_not_a_skip(tmp_path):
    path = tmp_path / "fake.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic but nothing else")
    with pytest.raises(ImageError):
        open_image(path)


def test_folder_walk_names_the_files_it_does_not_score(tmp_path, caplog):
    synthetic_photo(3).save(tmp_path / "a.jpg")
    import pillow_heif

    pillow_heif.from_pillow(synthetic_photo(4)).save(tmp_path / "b.heic")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "clip.mov").write_bytes(b"\x00" * 16)
    (tmp_path / ".hidden.jpg").write_bytes(b"")  # hidden: skipped by design, not counted
    with caplog.at_level(logging.WARNING, logger="iipa.inputs"):
        got = expand_inputs([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in got] == ["a.jpg", "b.heic"]
    [message] = [r.getMessage() for r in caplog.records]
    assert "2 file(s) not scored" in message and "clip.mov, notes.txt" in message


def test_the_warning_counts_beyond_the_names_it_shows(tmp_path, caplog):
    for i in range(8):
        (tmp_path / f"doc{i}.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="iipa.inputs"):
        assert expand_inputs([str(tmp_path)]) == []
    [message] = [r.getMessage() for r in caplog.records]
    assert "8 file(s)" in message and "doc4.txt and 3 more" in message and "doc5.txt" not in message
