"""`iipa score --engine spark` and `iipa.spark.score_frame` on a real local Spark (local[2]):
the scores equal `iipa score`'s, failures are rows, tables are read by the executors (no
driver-side listing), resume adds only what is missing, and executors never import torch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _formats import save_format_variants
from iipa.spark.partition import local_path, score_partition
from iipa.spark.session import parse_conf

TOL = 1e-4
spark_test = pytest.mark.spark


@pytest.fixture(scope="module")
def spark(spark_session):
    """The run's one Spark session (conftest), started once for every Spark test module."""
    return spark_session


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos) -> Path:
    """JPEG, PNG, EXIF-rotated JPEG, CMYK JPEG, and a broken file."""
    d = tmp_path_factory.mktemp("spark-images")
    save_format_variants(d, photos)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return d


@pytest.fixture(scope="module")
def local_rows(images) -> dict[str, dict]:
    """`iipa score` (this process, the default model) on the same folder."""
    from iipa.cli import main

    out = images.parent / "local.jsonl"
    assert main(["score", str(images), "--output", str(out)]) == 1  # the broken file
    return {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}


def _rows(spark, folder: Path) -> dict[str, dict]:
    frame = spark.read.parquet(str(folder)).toPandas()
    assert frame["path"].is_unique, "a path was scored twice"
    return {r["path"]: r for r in frame.astype(object).where(frame.notna(), None).to_dict("records")}


def _assert_same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert sorted(got) == sorted(expected)
    for path, want in expected.items():
        row = got[path]
        assert row["error"] == want["error"], path
        if want["error"] is None:
            assert abs(row["score"] - want["score"]) <= TOL, (path, row["score"], want["score"])
            assert abs(row["scaled"] - want["scaled"]) <= 0.01 and row["level"] == want["level"], path
        else:
            assert row["score"] is None and row["scaled"] is None and row["level"] is None


@spark_test
def test_cli_is_as_polite_as_iipa_score(spark, images, tmp_path, run_cli, monkeypatch, caplog):
    """A folder of images, a broken, an empty and a huge (sparse) file and a text file, given
    as a relative path: the rows, paths and warning of `iipa score`, in a fresh process whose
    stderr (the JVM's and the Python workers' included) holds nothing else."""
    shutil.copytree(images, tmp_path / "set")
    (tmp_path / "set" / "sub").mkdir()
    (tmp_path / "set" / "sub" / "empty.jpg").write_bytes(b"")  # Spark's binaryFile lists no 0-byte file
    (tmp_path / "set" / "readme.txt").write_text("not an image")
    with open(tmp_path / "set" / "huge.jpg", "wb") as fh:  # a JPEG, then 65 MiB of holes: refused unread
        fh.write((images / "plain.jpg").read_bytes())
        fh.truncate(65 * 2**20)
    monkeypatch.chdir(tmp_path)
    code, local, local_err = run_cli("score", "set", "-f", "jsonl")
    expected = {r["path"]: r for r in map(json.loads, local.splitlines())}
    assert code == 1 and len(expected) == 7, local_err
    warning = next(m for m in caplog.messages if "readme.txt" in m)  # the local command's, through logging
    assert expected["set/sub/empty.jpg"]["error"] == "empty file"
    assert expected["set/huge.jpg"]["error"] == "too large: 68,157,440 bytes > the limit of 67,108,864"

    proc = subprocess.run([sys.executable, "-m", "iipa", "score", "set", "--engine", "spark", "--output", "scores",
                           "--master", "local[2]"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "IIPA_DEBUG": ""})
    assert proc.returncode == 1, proc.stderr
    assert "wrote 7 rows" in proc.stdout, proc.stdout
    _assert_same(_rows(spark, tmp_path / "scores"), expected)
    lines = proc.stderr.splitlines()
    assert lines[0] == warning, proc.stderr
    assert lines[1].startswith("iipa score: 3 of 7 rows") and len(lines) == 5, proc.stderr  # + the 3 failures
    assert not re.search(r"WARN|INFO|log4j|FutureWarning|\[Stage", proc.stderr), proc.stderr


@spark_test
def test_score_frame_with_five_crops_and_an_exported_checkpoint(spark, images, tiny_checkpoint, run_cli):
    from iipa.spark import score_frame

    paths = spark.createDataFrame([(str(p),) for p in sorted(images.iterdir())], "image string")
    code, out, _ = run_cli("score", images, "--model", tiny_checkpoint, "--crops", 5, "-f", "jsonl")
    expected = {r["path"]: r for r in map(json.loads, out.splitlines())}
    got = score_frame(paths, path_column="image", model=tiny_checkpoint, crops=5).toPandas()
    got = got.astype(object).where(got.notna(), None)
    _assert_same({r["path"]: r for r in got.to_dict("records")}, expected)


@spark_test
def test_executors_import_no_torch(spark, images):
    from iipa.spark.partition import PartitionOptions
    from iipa.spark.score import ship_model

    model = ship_model(spark).broadcast

    def probe(batches):  # a local function: pickled by value, with score_partition by reference
        for out in score_partition(batches, model, PartitionOptions()):
            yield out.assign(torch="torch" in sys.modules, pid=os.getpid())

    paths = spark.createDataFrame([(str(p),) for p in sorted(images.iterdir())] * 4, "path string")
    rows = paths.repartition(2).mapInPandas(
        probe, "path string, score double, scaled double, level string, error string, torch boolean, pid int"
    ).toPandas()
    assert len(rows) == 20 and rows["score"].notna().sum() == 16
    assert not rows["torch"].any(), "an executor that scored imported torch"
    assert os.getpid() not in set(rows["pid"]), "the probe ran in the driver, not in an executor"


@spark_test
def test_a_table_of_mostly_missing_files_gives_error_rows(spark, images, local_rows, tmp_path):
    from iipa.spark import score_to_parquet

    real = sorted(p.name for p in images.iterdir())
    paths = [f"gone/{i:05d}.jpg" for i in range(10_000 - len(real))] + real  # relative to the table's folder
    table = images / "paths.parquet"
    pd.DataFrame({"post_id": range(len(paths)), "path": paths}).to_parquet(table)
    try:
        summary = score_to_parquet([str(table)], str(tmp_path / "out"), chunk_rows=4_000, spark=spark)
    finally:
        table.unlink()
    assert (summary.written, summary.rows, summary.chunks) == (10_000, 10_000, 3)
    assert summary.failed == 10_000 - len(real) + 1  # the missing files and broken.jpg
    rows = _rows(spark, tmp_path / "out")
    missing = [r for p, r in rows.items() if "/gone/" in p]
    assert len(missing) == 10_000 - len(real) and {r["error"] for r in missing} == {"not found"}
    assert missing[0]["path"].startswith(str(images / "gone") + "/")
    _assert_same({p: r for p, r in rows.items() if "/gone/" not in p}, local_rows)


@spark_test
def test_lists_globs_resume_and_overwrite(spark, images, tmp_path, run_cli, caplog):
    (tmp_path / "list.csv").write_text(f"image,likes\n{images / 'plain.jpg'},3\nplain.png,4\n")
    (tmp_path / "plain.png").write_bytes((images / "plain.png").read_bytes())
    (tmp_path / "list.txt").write_text(f"# a comment\n{images / 'cmyk.jpg'}\n\n")
    out = tmp_path / "scores"
    base = ["score", "--engine", "spark", "--output", out]
    code, _, err = run_cli(*base, tmp_path / "list.csv", tmp_path / "list.txt")
    assert code == 0, err
    first = _rows(spark, out)
    assert sorted(first) == sorted([str(images / "plain.jpg"), str(tmp_path / "plain.png"), str(images / "cmyk.jpg")])

    code, _, err = run_cli(*base, f"{images}/*.jpg")
    assert code == 2 and "not empty" in err and "--resume" in err

    code, stdout, _ = run_cli(*base, f"{images}/*.jpg", tmp_path / "list.txt", "--resume")
    assert code == 1 and "wrote 2 rows" in stdout  # rotated.jpg, broken.jpg: the others have rows
    resumed = _rows(spark, out)
    assert len(resumed) == 5 and all(resumed[p]["score"] == first[p]["score"] for p in first)

    code, stdout, err = run_cli(*base, f"{images}/plain.*", "--overwrite")
    assert code == 0 and "wrote 2 rows" in stdout, err
    assert sorted(_rows(spark, out)) == [str(images / "plain.jpg"), str(images / "plain.png")]

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    for name in ("tree/top.jpg", "tree/sub/deep.jpg"):
        (tmp_path / name).write_bytes((images / "plain.jpg").read_bytes())
    code, _, err = run_cli(*base, tmp_path / "tree", "--no-recursive", "--overwrite")
    assert code == 0 and list(_rows(spark, out)) == [str(tmp_path / "tree" / "top.jpg")], err

    # A URI is listed by Spark's file index: 0-byte files too, names decoded, the rest named
    (tmp_path / "tree" / "sub" / "empty 1%.jpg").write_bytes(b"")
    (tmp_path / "tree" / "notes.md").write_text("not an image")
    caplog.clear()
    code, _, err = run_cli(*base, (tmp_path / "tree").as_uri(), "--overwrite")
    rows = _rows(spark, out)
    assert code == 1 and sorted(rows) == [str(tmp_path / "tree" / n) for n in ("sub/deep.jpg", "sub/empty 1%.jpg",
                                                                               "top.jpg")], err
    assert rows[str(tmp_path / "tree" / "sub" / "empty 1%.jpg")]["error"] == "empty file"
    assert any("1 file(s) not scored" in m and "notes.md" in m for m in caplog.messages), caplog.messages


@spark_test
def test_unreadable_inputs_are_usage_errors(spark, tmp_path, run_cli):
    pd.DataFrame({"likes": [1]}).to_parquet(tmp_path / "nopath.parquet")
    out = tmp_path / "scores"
    for spec, message in ((tmp_path / "gone.parquet", "cannot read it as a parquet table"),
                          (tmp_path / "gone", "no such folder, file or matching files"),
                          (tmp_path / "nopath.parquet", "no path column (path, image, file, filename); its columns: likes")):
        code, _, err = run_cli("score", spec, "--engine", "spark", "--output", out)
        assert code == 2 and message in err and str(spec) in err, err
        assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--engine", "spark"], "needs --output"),
    (["--engine", "spark", "-o", "x", "--sort", "desc"], "--sort"),
    (["--engine", "spark", "-o", "x", "--workers", "2"], "spark.task.cpus"),
    (["--resume"], "only apply with --engine spark"),
    (["--engine", "spark", "-o", "x", "--conf", "novalue"], "KEY=VALUE"),
], ids=["no-output", "sort", "workers", "resume-local", "bad-conf"])
def test_usage_errors_before_spark_starts(images, tmp_path, run_cli, argv, message):
    code, _, err = run_cli("score", images, *[str(tmp_path / a) if a == "x" else a for a in argv])
    assert code == 2 and message in err, err


def test_remote_files_are_read_through_fsspec(images, local_rows):
    """Executors read URIs (hdfs://, s3a://, ...) themselves; fsspec's memory:// stands in."""
    fsspec = pytest.importorskip("fsspec")
    from iipa.model.record import resolve_model
    from iipa.spark.partition import (
        FILESYSTEM_SCHEMES,
        PartitionOptions,
        make_partition_scorer,
        score_slice,
    )

    fs = fsspec.filesystem("memory")
    fs.pipe("/spark-test/plain.jpg", (images / "plain.jpg").read_bytes())
    fs.pipe("/spark-test/big.jpg", (images / "plain.jpg").read_bytes() + bytes(5000))
    scorer = make_partition_scorer(str(resolve_model().onnx_file), PartitionOptions(), threads=1)
    size = len((images / "plain.jpg").read_bytes())
    # memory:// is no file system a paths table may name: the tests allow it explicitly
    options = PartitionOptions(schemes=(*FILESYSTEM_SCHEMES, "memory"), max_bytes=size + 100)
    uris = ["memory://spark-test/plain.jpg", "memory://spark-test/gone.jpg", "memory://spark-test/big.jpg"]
    rows = score_slice(scorer, [*uris, str(images / "cmyk.jpg")], options=options).set_index("path")
    for name, uri in (("plain.jpg", uris[0]), ("cmyk.jpg", str(images / "cmyk.jpg"))):
        assert abs(rows.loc[uri, "score"] - local_rows[str(images / name)]["score"]) <= TOL
    assert rows.loc[uris[1], "error"] == "not found"
    assert rows.loc[uris[2], "error"] == f"too large: {size + 5000:,} bytes > the limit of {size + 100:,}"
    refused = score_slice(scorer, uris[:1]).set_index("path")  # the default schemes
    assert refused.loc[uris[0], "error"].startswith("unsupported scheme 'memory'")


def test_a_paths_table_opens_only_file_system_schemes(images, monkeypatch):
    """data:, ftp://, http:// ... are error rows, never opened (no fetch, no connection)."""
    from iipa.spark import partition
    from iipa.spark.partition import PartitionOptions, scheme, score_slice

    opened = []
    monkeypatch.setattr(partition, "read_remote", lambda uri, max_bytes=None: opened.append(uri) or b"")

    class Scorer:  # never reached: nothing is readable
        def iter_scores(self, items):
            raise AssertionError(items)

    uris = ["data:image/jpeg;base64,/9j/4AAQ", "ftp://127.0.0.1/a.jpg", "http://example.com/a.jpg",
            "HTTPS://example.com/a.jpg", "memory://x/a.jpg", "file+ssh://h/a.jpg"]
    rows = score_slice(Scorer(), uris, options=PartitionOptions()).set_index("path")
    assert not opened
    for uri in uris:
        assert rows.loc[uri, "error"] == (f"unsupported scheme {scheme(uri)!r}: iipa reads plain paths and "
                                          "file, hdfs, s3, s3a, gs, abfs, abfss URIs"), uri
    assert scheme("C:\\photos\\a.jpg") is None and scheme("S3A://b/a.jpg") == "s3a"
    assert partition.fetch("s3a://bucket/a.jpg", PartitionOptions()) == (b"", None) and opened == ["s3a://bucket/a.jpg"]


def test_paths_local_or_remote():
    assert local_path("/a/b.jpg") == "/a/b.jpg" and local_path("rel/b.jpg") == "rel/b.jpg"
    assert local_path("file:/a/b c.jpg") == "/a/b c.jpg" and local_path("file:///a/b.jpg") == "/a/b.jpg"
    assert local_path("hdfs://nn/a.jpg") is None and local_path("s3a://bucket/a.jpg") is None
    assert parse_conf(["spark.task.cpus=2", "a=b=c"]) == {"spark.task.cpus": "2", "a": "b=c"}


def test_session_conf_local_jvm_options_and_overrides():
    from iipa.spark.session import LOCAL_JAVA_OPTIONS, LOG4J_CONFIG, PANDAS_WARNING, session_conf

    quiet = f"-Dlog4j.configurationFile={LOG4J_CONFIG.as_uri()} -Diipa.log4j.level=ERROR"
    local = session_conf(None, None)
    assert local["spark.master"] == "local[*]"
    assert local["spark.driver.defaultJavaOptions"] == f"{LOCAL_JAVA_OPTIONS} {quiet}"
    assert "-XX:TieredStopAtLevel=1" in LOCAL_JAVA_OPTIONS and LOG4J_CONFIG.is_file()
    mine = session_conf("local[2]", {"spark.driver.defaultJavaOptions": "-Xss4m", "spark.ui.enabled": "true"})
    assert mine["spark.driver.defaultJavaOptions"] == "-Xss4m" and mine["spark.ui.enabled"] == "true"
    cluster = session_conf("spark://head:7077", None)  # the driver's JVM is still ours: quiet, its own JIT
    assert cluster["spark.master"] == "spark://head:7077" and cluster["spark.driver.defaultJavaOptions"] == quiet
    submitted = session_conf(None, {"spark.task.cpus": "2"}, submitted=True)  # spark-submit chose the master
    assert "spark.master" not in submitted and "spark.driver.defaultJavaOptions" not in submitted
    assert submitted["spark.task.cpus"] == "2" and submitted["spark.sql.session.timeZone"] == "UTC"
    # a command's own defaults sit between iipa's and --conf; local_java=False keeps the JVM's JIT
    pairs = session_conf("local[2]", {"a.b": "1"}, defaults={"a.b": "0", "c.d": "2", "spark.ui.enabled": "x"},
                         local_java=False)
    assert pairs["a.b"] == "1" and pairs["c.d"] == "2" and pairs["spark.ui.enabled"] == "x"
    assert pairs["spark.driver.defaultJavaOptions"] == quiet
    # the pandas-3 warning off in the Python workers, after whatever PYTHONWARNINGS says
    assert pairs["spark.executorEnv.PYTHONWARNINGS"].endswith(f"ignore:{PANDAS_WARNING}:FutureWarning")
    assert pairs["spark.ui.showConsoleProgress"] == "false"  # stderr is no terminal here
