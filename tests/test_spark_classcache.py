"""The JVM class-data archive (iipa.spark.classcache): who records, who maps, what a failed
start does, and one real archive recorded by a JVM and mapped by the next (conftest's
``class_archive``, in the run's IIPA_HOME, which the suite's other JVMs map once it is written)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from iipa.spark import classcache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IIPA_HOME", str(tmp_path))
    monkeypatch.setenv(classcache.ENV_SWITCH, "1")
    monkeypatch.setattr(classcache, "archive_key", lambda: "k")
    return tmp_path / "jvm"


def test_records_once_maps_after_and_steps_aside(cache, monkeypatch):
    first = classcache.plan()
    assert first.recording == cache / f"spark-k.jsa.part-{os.getpid()}" and first.final == cache / "spark-k.jsa"
    assert f"-XX:ArchiveClassesAtExit={first.recording}" in first.options and classcache.QUIET in first.options
    assert (cache / "spark-k.lock").read_text() == str(os.getpid())
    assert classcache.plan().options == ""  # a live process records: the others run without
    classcache.failed(first)  # a JVM that did not start leaves no lock and no half archive
    assert not (cache / "spark-k.lock").exists()

    (cache / "spark-k.lock").write_text("999999999")  # a process that is gone: its lock is stale
    assert classcache.plan().recording is not None
    (cache / "spark-k.lock").unlink()

    (cache / "spark-k.jsa").write_bytes(b"archive")
    mapped = classcache.plan()
    assert mapped.options == f"-XX:SharedArchiveFile={cache / 'spark-k.jsa'} {classcache.QUIET}"
    assert mapped.recording is None and not (cache / "spark-k.lock").exists()
    classcache.failed(mapped)  # a session that failed to start with it: the archive goes
    assert not (cache / "spark-k.jsa").exists()

    monkeypatch.setenv(classcache.ENV_SWITCH, "0")
    assert classcache.plan().options == ""
    monkeypatch.setenv(classcache.ENV_SWITCH, "1")
    monkeypatch.setattr(classcache, "archive_key", lambda: None)  # no java or no Spark jars
    assert classcache.plan().options == ""


def test_the_archive_goes_into_place_only_after_a_normal_exit(cache, monkeypatch):
    """At exit the recording process closes the JVM's stdin, waits, and renames the archive
    only when the JVM exited with 0; a part left by a killed process goes at the next
    recording; archives of another key go once unused for UNUSED_DAYS days."""
    from _spark import require_spark

    pyspark = require_spark("pyspark")

    class Proc:
        def __init__(self, code):
            self.code, self.stdin = code, self
            self.closed = False

        def close(self):
            self.closed = True

        def wait(self, timeout):
            return self.code

    gateway = type("Gateway", (), {"shutdown": lambda self: None})()
    monkeypatch.setattr(pyspark.SparkContext, "_gateway", gateway)
    monkeypatch.setattr(pyspark.SparkContext, "_active_spark_context", None)
    cache.mkdir(parents=True)
    killed = cache / "spark-k.jsa.part-999999999"
    killed.write_bytes(b"half")
    old, recent = cache / "spark-old.jsa", cache / "spark-recent.jsa"
    for f in (old, recent):
        f.write_bytes(b"other key")
    os.utime(old, (0, time.time() - (classcache.UNUSED_DAYS + 1) * 86400))

    p = classcache.plan()
    assert not killed.exists()
    gateway.proc = Proc(1)  # a JVM that did not exit normally: its archive may be partial
    p.recording.write_bytes(b"maybe partial")
    classcache._finish_recording(p)
    assert gateway.proc.closed and not p.final.exists() and not p.recording.exists() and not p.lock.exists()

    p = classcache.plan()
    gateway.proc = Proc(0)
    p.recording.write_bytes(b"complete")
    classcache._finish_recording(p)
    assert p.final.read_bytes() == b"complete" and not p.recording.exists() and not p.lock.exists()
    assert not old.exists() and recent.exists()


def test_a_cache_folder_with_a_space_means_no_archive(tmp_path, monkeypatch):
    """Spark splits the JVM's options at spaces: an archive under "/Users/Ann Lee" would
    break the JVM's start, so there is none."""
    monkeypatch.setenv("IIPA_HOME", str(tmp_path / "Ann Lee"))
    monkeypatch.setenv(classcache.ENV_SWITCH, "1")
    monkeypatch.setattr(classcache, "archive_key", lambda: "k")
    assert classcache.plan().options == "" and not (tmp_path / "Ann Lee").exists()


def test_a_cache_folder_it_cannot_make_means_no_archive(cache):
    cache.write_text("a file where the folder would go")  # as a read-only home fails, for root too
    assert classcache.plan().options == ""


def test_key_follows_java_and_spark_jars(tmp_path, monkeypatch):
    java, jars = tmp_path / "java", tmp_path / "jars"
    jars.mkdir()
    java.write_text("jvm")
    (jars / "spark-core.jar").write_text("v1")
    monkeypatch.setattr(classcache, "_java_binary", lambda: java)
    monkeypatch.setattr(classcache, "_spark_jars", lambda: jars)
    key = classcache.archive_key()
    assert key == classcache.archive_key() and len(key) == 16
    (jars / "spark-core.jar").write_text("v2 longer")
    assert classcache.archive_key() != key
    monkeypatch.setattr(classcache, "_java_binary", lambda: None)
    assert classcache.archive_key() is None


def test_session_appends_the_options_and_retries_without_a_bad_archive(cache, monkeypatch):
    """get_session: the archive's options after iipa's own JVM options; a start that fails
    with an archive is tried once more without it, and the archive is deleted."""
    from _spark import require_spark

    pyspark = require_spark("pyspark")
    from pyspark.sql import SparkSession

    import iipa.spark.session as S

    monkeypatch.setattr(pyspark.SparkContext, "_gateway", None)
    monkeypatch.setattr(SparkSession, "getActiveSession", classmethod(lambda cls: None))
    cache.mkdir(parents=True)
    (cache / "spark-k.jsa").write_bytes(b"archive")
    calls = []

    class FakeSession:
        sparkContext = type("SC", (), {"setLogLevel": lambda self, level: None})()

    def fake_start(app, settings, options):
        calls.append((settings["spark.driver.defaultJavaOptions"], options))
        if len(calls) == 1:
            raise RuntimeError("Java gateway process exited before sending its port number")
        return FakeSession()

    monkeypatch.setattr(S, "_start", fake_start)
    session, created = S.get_session("local[1]")
    assert isinstance(session, FakeSession) and created
    assert calls[0][1].startswith("-XX:SharedArchiveFile=") and calls[1][1] == ""
    assert "-Dlog4j.configurationFile=" in calls[0][0]
    assert not (cache / "spark-k.jsa").exists()

    calls.clear()  # the user's own JVM options: no archive (iipa's options are not there to extend)
    monkeypatch.setattr(S, "_start", lambda app, settings, options: calls.append(options) or FakeSession())
    S.get_session("local[1]", {"spark.driver.defaultJavaOptions": "-Xss4m"})
    assert calls == [""] and not (cache / "spark-k.lock").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_a_real_archive_is_recorded_at_exit_then_mapped(class_archive):
    """The suite's recording (conftest's ``class_archive``: ``python -m iipa.spark.record_classes``
    in a fresh IIPA_HOME) waited at exit for its JVM and moved the archive into place, leaving
    no lock or part; a new session's JVM maps that file (/proc/<pid>/maps), and the program's
    stdout holds only its own lines (the JVM's CDS messages are off)."""
    from _spark import require_spark

    require_spark("pyspark")
    code, out, err = class_archive.result()
    assert code == 0 and out == "", (out, err)
    if "none recorded" not in err:  # else another xdist worker's recording took the lock first
        assert "recording the JVM's class-data archive into" in err, err
    assert class_archive.archive() is not None, err
    home = Path(os.environ["IIPA_HOME"])
    archives = sorted((home / "jvm").iterdir())
    assert [p.suffix for p in archives] == [".jsa"] and archives[0].stat().st_size > 10_000_000, archives
    probe = textwrap.dedent("""
        import os
        from iipa.spark.session import get_session
        spark, _ = get_session("local[1]")
        assert spark.range(5).count() == 5
        pid = spark._jvm.java.lang.ProcessHandle.current().pid()
        home = os.environ["IIPA_HOME"]
        print("\\n".join(line.split()[-1] for line in open(f"/proc/{pid}/maps") if home in line))
    """)
    proc = subprocess.run([sys.executable, "-c", probe], env={**os.environ, classcache.ENV_SWITCH: "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line] == [str(archives[0])], proc.stdout
    assert sorted((home / "jvm").iterdir()) == archives  # no lock, no part left


def test_the_runs_spark_session_keeps_to_the_runs_home(spark_session):
    """The run's one Spark session (a session fixture, set up before any function fixture)
    maps the archive recorded in the run's IIPA_HOME, never one in the user's ~/.cache/iipa:
    it recorded one there before conftest's ``_session_home``."""
    options = spark_session.sparkContext.getConf().get("spark.driver.defaultJavaOptions", "")
    archives = [option for option in options.split() if "Archive" in option]
    home = Path(os.environ["IIPA_HOME"])
    assert archives == [f"-XX:SharedArchiveFile={classcache.archive_path(classcache.archive_key())}"], options
    assert classcache.archive_path(classcache.archive_key()).parent == home / "jvm"


def test_recording_ahead_says_why_not(tmp_path, monkeypatch, capsys):
    """`python -m iipa.spark.record_classes` without an archive to record."""
    monkeypatch.setenv("IIPA_HOME", str(tmp_path))
    monkeypatch.setenv(classcache.ENV_SWITCH, "0")
    from iipa.spark.record_classes import record

    record()
    assert "IIPA_SPARK_CDS is off" in capsys.readouterr().err
    monkeypatch.setenv(classcache.ENV_SWITCH, "1")
    monkeypatch.setattr(classcache, "archive_key", lambda: "k")
    (tmp_path / "jvm").mkdir()
    (tmp_path / "jvm" / "spark-k.lock").write_text(str(os.getppid()))  # a live process records it
    record()  # returns at once: it would otherwise start a session that records nothing
    assert "spark-k.jsa now: none recorded" in capsys.readouterr().err
    (tmp_path / "jvm" / "spark-k.jsa").write_bytes(b"archive")
    record()
    assert "already there" in capsys.readouterr().err
