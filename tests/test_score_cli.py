"""`iipa score`: inputs, formats, sorting, per-file errors and exit codes."""

import csv
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from iipa.cli import build_parser


@pytest.fixture
def album(tmp_path, photos):
    d = tmp_path / "album"
    (d / "sub").mkdir(parents=True)
    for i, (name, arr) in enumerate(photos.items()):
        target = d / "sub" if i % 2 else d
        Image.fromarray(arr).resize((80, 60)).save(target / f"{name}.jpg")
    (d / "notes.txt").write_text("not an image, and not listed: wrong extension")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return d


def test_folder_is_scored_recursively_with_errors_reported(run_cli, album, tiny_checkpoint):
    code, out, err = run_cli("score", album, "--model", tiny_checkpoint, "-f", "json")
    rows = json.loads(out)
    assert code == 1
    assert len(rows) == 5
    bad = [r for r in rows if r["error"]]
    assert [r["path"] for r in bad] == [str(album / "broken.png")]
    assert "1 of 5 inputs could not be scored" in err and "broken.png" in err
    good = [r for r in rows if not r["error"]]
    assert all(isinstance(r["score"], float) and 0 <= r["scaled"] <= 100 and r["level"] for r in good)


def test_all_good_exits_zero_and_no_recursive(run_cli, album, tiny_checkpoint):
    code, out, _ = run_cli("score", album / "sub", "--model", tiny_checkpoint, "-f", "jsonl")
    assert code == 0 and len(out.strip().splitlines()) == 2
    code, out, _ = run_cli("score", album, "--no-recursive", "--model", tiny_checkpoint, "-f", "jsonl")
    assert len(out.strip().splitlines()) == 3  # chelsea, astronaut, broken.png


def test_sort_and_csv_output_file(run_cli, album, tiny_checkpoint, tmp_path):
    out_file = tmp_path / "res" / "scores.csv"
    code, out, _ = run_cli("score", album, "--model", tiny_checkpoint, "--sort", "desc", "-o", out_file)
    assert code == 1 and out == ""
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    scores = [float(r["score"]) for r in rows if not r["error"]]
    assert scores == sorted(scores, reverse=True)
    assert rows[-1]["error"]  # failures last
    code, out, _ = run_cli("score", album / "sub", "--model", tiny_checkpoint, "--sort", "asc", "-f", "csv")
    asc = [float(r["score"]) for r in csv.DictReader(io.StringIO(out))]
    assert asc == sorted(asc)


def test_table_output_is_aligned(run_cli, album, tiny_checkpoint):
    code, out, _ = run_cli("score", album / "sub", "--model", tiny_checkpoint)
    lines = out.splitlines()
    assert lines[0].split() == ["path", "score", "scaled", "level", "error"]
    assert len(lines) == 3


def test_list_files_globs_and_missing_paths(run_cli, album, tiny_checkpoint, tmp_path):
    (album / "list.txt").write_text("# my picks\nchelsea.jpg\n\nsub/coffee.jpg\nghost.jpg\n")
    with open(album / "list.csv", "w") as fh:
        fh.write("id,path\n1,astronaut.jpg\n2,sub/rocket.jpg\n")
    code, out, err = run_cli("score", album / "list.txt", album / "list.csv", str(album / "**" / "c*.jpg"),
                             tmp_path / "nowhere.jpg", "--model", tiny_checkpoint, "-f", "json")
    rows = json.loads(out)
    names = [r["path"].split("/")[-1] for r in rows]
    assert names == ["chelsea.jpg", "coffee.jpg", "ghost.jpg", "astronaut.jpg", "rocket.jpg",
                     "chelsea.jpg", "coffee.jpg", "nowhere.jpg"]
    errors = {r["path"].split("/")[-1]: r["error"] for r in rows if r["error"]}
    assert errors == {"ghost.jpg": "not found", "nowhere.jpg": "not found"}
    assert code == 1


def test_batches_split_across_workers_keep_input_order(run_cli, album, tiny_checkpoint):
    args = ("score", album, "--model", tiny_checkpoint, "-f", "json")
    _, one, _ = run_cli(*args, "--batch-size", "64", "--workers", "0")
    _, many, _ = run_cli(*args, "--batch-size", "1", "--workers", "2")
    a, b = json.loads(one), json.loads(many)
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert (x["score"] is None) == (y["score"] is None)
        if x["score"] is not None:
            assert abs(x["score"] - y["score"]) < 1e-4


def test_usage_errors_exit_two(run_cli, album, tiny_checkpoint, tmp_path):
    assert run_cli("score", album, "--model", tmp_path / "none.pt")[0] == 2
    assert run_cli("score", album, "--model", tiny_checkpoint, "-o", tmp_path / "x.xlsx")[0] == 2
    # a row naming the missing path, and exit 2: no input could be scored
    assert run_cli("score", tmp_path / "empty_dir_that_is_missing" / "*.jpg", "--model", tiny_checkpoint)[0] == 2
    (tmp_path / "emptydir").mkdir()
    code, _, err = run_cli("score", tmp_path / "emptydir", "--model", tiny_checkpoint)
    assert code == 2 and "no image files" in err
    assert run_cli("score", album, "--precision", "fp64")[0] == 2
    assert run_cli("nonsense")[0] == 2


def test_every_command_has_help(run_cli):
    parser = build_parser()
    commands = [a for a in parser._subparsers._group_actions[0].choices]
    assert {"score", "models"} <= set(commands)
    code, out, _ = run_cli("--help")
    assert code == 0 and all(name in out for name in commands)
    for name in commands:
        code, out, _ = run_cli(name, "--help")
        assert code == 0 and "usage: iipa " + name in out


def test_python_dash_m_entry_point(album, tiny_checkpoint):
    proc = subprocess.run([sys.executable, "-m", "iipa", "score", str(album / "sub"), "--model",
                           str(tiny_checkpoint), "-f", "csv"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("path,score,scaled,level,error")
