"""Input expansion loses nothing silently: unreadable sub-folders get an error row,
symlinked folders are followed once, symlink loops end."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from iipa.inputs import expand_inputs


def _album(tmp_path):
    d = tmp_path / "album"
    (d / "sub").mkdir(parents=True)
    (d / "locked").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    arr = np.full((40, 40, 3), 120, np.uint8)
    for p in (d / "a.jpg", d / "sub" / "b.jpg", d / "locked" / "c.jpg", outside / "d.jpg"):
        Image.fromarray(arr).save(p)
    os.symlink(outside, d / "linked")       # a symlinked folder: followed
    os.symlink(d, d / "sub" / "loop")       # a loop back to the top: walked once
    return d


def _deny(monkeypatch, folder):
    """Make one folder unlistable (tests run as root, so chmod would not do it)."""
    real_scandir, real_access = os.scandir, os.access

    def scandir(path="."):
        if os.fspath(path) == os.fspath(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == os.fspath(folder)
                        else real_access(p, mode))


def test_symlinks_followed_once_and_unreadable_folders_kept(tmp_path, monkeypatch):
    d = _album(tmp_path)
    _deny(monkeypatch, d / "locked")
    got = expand_inputs([str(d)])
    names = sorted(os.path.basename(p) for p in got)
    assert names == ["a.jpg", "b.jpg", "d.jpg", "locked"], got
    assert str(d / "locked") in got


def test_score_gives_the_unreadable_folder_an_error_row(tmp_path, monkeypatch, run_cli, tiny_checkpoint):
    d = _album(tmp_path)
    _deny(monkeypatch, d / "locked")
    code, out, err = run_cli("score", d, "--model", tiny_checkpoint, "-f", "json")
    rows = json.loads(out)
    assert code == 1 and len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert [r["path"] for r in bad] == [str(d / "locked")]
    assert "cannot be listed" in bad[0]["error"], bad
