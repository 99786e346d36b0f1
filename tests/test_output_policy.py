"""One output policy for every table writer (output.py / fileio.py), tried on real special
files made inside the test's temporary folder (os.mkfifo, os.mknod), never on the
machine's own devices: regular files replaced atomically and only on success, FIFOs and
character devices written through, a symlink's target written, folders refused before
any work, non-UTF-8 file names escaped the same way in every format."""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from iipa.errors import IIPAError
from iipa.fileio import printable
from iipa.output import check_output, infer_format, is_stdout, open_output, write_rows

ROWS = [{"path": f"img{i}.jpg", "score": i / 10} for i in range(50)]
NULL, FULL = os.makedev(1, 3), os.makedev(1, 7)  # Linux's /dev/null and /dev/full numbers


def _chardev(path: Path, dev: int) -> Path:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, dev)
    except PermissionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("mknod needs root (CAP_MKNOD)")
    return path


def _write(path, rows=ROWS, fmt="csv"):
    with open_output(path) as fh:
        return write_rows(rows, ["path", "score"], fmt, fh)


def test_regular_file_is_replaced_only_when_complete(tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    os.chmod(out, 0o640)

    def boom():
        yield ROWS[0]
        raise RuntimeError("scoring failed half-way")

    with pytest.raises(RuntimeError):
        _write(out, boom())
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.csv"]
    assert _write(out) == 50
    assert out.read_text().splitlines()[1] == "img0.jpg,0.0"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640, "the replaced file keeps its permissions"


def test_full_disk_at_flush_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    out.write_text("old\n")

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(IIPAError, match="No space left on device; nothing was written, the previous file is kept"):
        _write(out)
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.csv"]


def test_a_real_write_error_keeps_the_old_file(tmp_path):
    """The kernel refuses the write (a file-size limit: EFBIG, as a full disk gives ENOSPC)."""
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
            "from iipa.output import open_output, write_rows\n"
            "rows = ({'path': 'x' * 100, 'score': 1.0} for _ in range(1000))\n"
            "with open_output(sys.argv[1]) as fh:\n"
            "    write_rows(rows, ['path', 'score'], 'csv', fh)\n")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "the previous file is kept" in res.stderr, res.stderr
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.csv"]


def test_character_devices_are_written_through(tmp_path):
    null = _chardev(tmp_path / "null", NULL)
    assert _write(null) == 50
    assert stat.S_ISCHR(null.stat().st_mode), "the device must not be replaced by a file"
    full = _chardev(tmp_path / "full", FULL)
    with pytest.raises(IIPAError, match=r"full: No space left on device$"):
        _write(full, ROWS * 200)
    assert stat.S_ISCHR(full.stat().st_mode) and sorted(os.listdir(tmp_path)) == ["full", "null"]


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    _write(fifo, fmt="jsonl")
    reader.join(10)
    assert [json.loads(line)["path"] for line in got[0].splitlines()] == [r["path"] for r in ROWS]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and os.listdir(tmp_path) == ["pipe"]


def test_symlink_target_is_written_and_the_link_kept(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "scores.csv"
    target.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    _write(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("path,score")
    dangling = tmp_path / "new.csv"
    dangling.symlink_to(tmp_path / "real" / "made.csv")
    _write(dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "made.csv").is_file()


def test_folders_and_unwritable_places_are_refused_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    for bad, why in [("empty", "is a folder"), ("empty/", "is a folder"), ("nothere/", "ends in /"),
                     ("afile/x.csv", "is a file, not a folder")]:
        path = os.path.join(tmp_path, bad)
        with pytest.raises(IIPAError) as info:
            check_output(path)
        assert why in str(info.value) and str(info.value).startswith(f"--output {path}:"), info.value
        assert ".tmp" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["afile", "empty"] and os.listdir(tmp_path / "empty") == []


def test_non_utf8_names_are_escaped_the_same_way_everywhere(tmp_path):
    name = os.fsdecode(b"caf\xe9 \xc3\xa9t\xc3\xa9.jpg")  # one bad byte, then valid UTF-8
    assert printable(name) == "caf\\xe9 été.jpg"
    rows = [{"path": name, "score": 0.5}]
    for fmt in ("csv", "json", "jsonl", "table"):
        out = tmp_path / f"t.{fmt}"
        _write(out, rows, fmt)
        text = out.read_text(encoding="utf-8")
        if fmt == "csv":
            assert next(csv.DictReader(text.splitlines()))["path"] == "caf\\xe9 été.jpg"
        elif fmt == "json":
            assert json.loads(text)[0]["path"] == "caf\\xe9 été.jpg"
        elif fmt == "jsonl":
            assert json.loads(text)["path"] == "caf\\xe9 été.jpg"
        else:
            assert "caf\\xe9 été.jpg" in text


@pytest.fixture
def odd_album(tmp_path, photos):
    d = tmp_path / "album"
    d.mkdir()
    Image.fromarray(photos["coffee"]).resize((64, 48)).save(os.path.join(os.fsencode(d), b"caf\xe9.jpg"), "JPEG")
    Image.fromarray(photos["chelsea"]).resize((64, 48)).save(d / "cat.jpg")
    return d


def test_score_with_a_non_utf8_name_writes_valid_json(run_cli, odd_album, tiny_checkpoint, tmp_path):
    out = tmp_path / "x.json"
    code, _, err = run_cli("score", odd_album, "--model", tiny_checkpoint, "-o", out)
    assert code == 0, err
    paths = sorted(Path(r["path"]).name for r in json.loads(out.read_text(encoding="utf-8")))
    assert paths == ["caf\\xe9.jpg", "cat.jpg"]
    code, stdout, err = run_cli("score", odd_album, "--model", tiny_checkpoint, "-f", "json")
    assert code == 0 and json.loads(stdout)[0]["path"].endswith("caf\\xe9.jpg"), err


def test_rank_refuses_a_folder_output_before_scoring(run_cli, odd_album, tiny_checkpoint, tmp_path):
    (tmp_path / "emptydir").mkdir()
    for args in (["-o", f"{tmp_path}/emptydir/"], ["--report", f"{tmp_path}/emptydir"]):
        code, out, err = run_cli("rank", odd_album, "--model", tiny_checkpoint, *args)
        assert code == 2 and out == "" and "is a folder" in err and ".tmp" not in err, err
        assert err.count("\n") == 1 and "emptydir" in err
    assert os.listdir(tmp_path / "emptydir") == []


def test_closed_stdin_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "iipa", "score", "-"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         preexec_fn=lambda: os.close(0))
    assert res.returncode == 2, res.stderr
    assert res.stderr == "iipa score: error: - reads paths from standard input, but standard input is closed\n"


WRITE_TO = ("import sys\n"
            "from iipa.output import open_output, write_rows\n"
            "print('before', flush=True)\n"
            "with open_output(sys.argv[1]) as fh:\n"
            "    write_rows([{'a': 1}], ['a'], 'csv', fh)\n")


def test_descriptor_paths_write_to_the_process_own_stdout(tmp_path):
    """/dev/fd/1 (the same as /dev/stdout) of a child whose stdout is a pipe, then a file
    opened for appending: written through, never truncated or renamed over."""
    res = subprocess.run([sys.executable, "-c", WRITE_TO, "/dev/fd/1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.splitlines() == ["before", "a", "1"], res.stderr
    log = tmp_path / "log.txt"
    log.write_text("old\n")
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-c", WRITE_TO, "/proc/self/fd/1"], stdout=fh, check=True, timeout=60)
    assert log.read_text().splitlines() == ["old", "before", "a", "1"]


def test_ctrl_c_while_writing_keeps_the_old_file(run_cli, odd_album, tiny_checkpoint, tmp_path, monkeypatch):
    import iipa.output

    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    real = iipa.output.write_rows

    def interrupted(rows, columns, fmt, fh):
        real(iter([next(iter(rows))]), columns, fmt, fh)  # one row written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(iipa.output, "write_rows", interrupted)
    code, _, err = run_cli("score", odd_album, "--model", tiny_checkpoint, "-o", out)
    assert code == 130 and "interrupted" in err
    assert out.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["album", "scores.csv"]


def test_rank_to_stdout_by_path_prints_the_table(odd_album, tiny_checkpoint, tmp_path):
    """The reported case, `iipa rank photos/ -o /dev/stdout -f csv` printed nothing and replaced
    /dev/stdout. Here through a link in the test's folder that is what /dev/stdout is (a link to
    /proc/self/fd/1), so a regression could never touch the machine's own /dev."""
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    res = subprocess.run([sys.executable, "-m", "iipa", "rank", str(odd_album), "--model", str(tiny_checkpoint),
                          "-o", str(stdout), "-f", "csv"], capture_output=True, text=True, timeout=300)
    assert stdout.is_symlink()
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert sorted(Path(r["path"]).name for r in rows) == ["caf\\xe9.jpg", "cat.jpg"]


SHELL_SEQUENCE = '( echo a; "$1" -m iipa score "$2" -o "$3" -f csv; echo b ) > "$4"'


@pytest.mark.parametrize("target", ["/dev/stdout", "-"])
def test_shell_redirection_keeps_every_part_in_order(photo_dir, tmp_path, target):
    """`( echo a; iipa score … -o /dev/stdout -f csv; echo b ) > f`: iipa writes through the
    descriptor the shell gave it, at the shell's offset, so neither the header nor `b` is lost
    (re-opening /dev/stdout wrote at a second offset and `b` overwrote the header)."""
    out = tmp_path / "f"
    res = subprocess.run(["bash", "-c", SHELL_SEQUENCE, "sh", sys.executable, str(photo_dir / "chelsea.jpg"),
                          target, str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = out.read_bytes()
    assert b"\r" not in data  # one line ending for every CSV: \n
    lines = data.decode().splitlines()
    assert lines[0] == "a" and lines[1] == "path,score,scaled,level,error" and lines[-1] == "b", lines
    assert len(lines) == 4 and lines[2].startswith(str(photo_dir / "chelsea.jpg") + ","), lines


def test_stdout_by_any_name_is_the_default_table(tmp_path, capsys):
    """No -o, `-o -` and `-o /dev/stdout` (or a link to it) without -f: the same table on stdout."""
    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    texts = []
    for output in (None, "-", "/dev/stdout", str(link)):
        assert infer_format(output, None) == "table" and is_stdout(output)
        check_output(output)
        _write(output, ROWS[:2], infer_format(output, None))
        texts.append(capsys.readouterr().out)
    assert texts[0].splitlines()[0].split() == ["path", "score"] and texts.count(texts[0]) == 4
    assert not is_stdout("/dev/stderr") and not is_stdout(tmp_path / "x.csv")
    with pytest.raises(IIPAError, match="cannot tell the format of --output"):
        infer_format(str(tmp_path / "scores"), None)


def test_every_csv_writer_ends_lines_with_newline_only(tmp_path):
    import pandas as pd

    from iipa.csvsafe import CSV_LINE_END, SafeWriter, frame_to_csv

    assert CSV_LINE_END == "\n"
    _write(tmp_path / "a.csv")
    with open(tmp_path / "b.csv", "w", newline="") as fh:
        SafeWriter(fh).writerow(["x", "=1"])
    frame_to_csv(pd.DataFrame({"x": [1, 2]}), tmp_path / "c.csv")
    for name in ("a.csv", "b.csv", "c.csv"):
        data = (tmp_path / name).read_bytes()
        assert b"\r" not in data and data.endswith(b"\n"), name
