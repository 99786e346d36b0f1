"""The class-data archive (Java's AppCDS) of the JVMs iipa starts for its own Spark sessions.

A JVM that starts Spark loads, parses and verifies ~10,000 classes from Spark's jars: about
half of a local session's start-up and a good part of its first query. A dynamic CDS archive
keeps those classes parsed and verified on disk, mapped by every later JVM: a local session
then starts in ~2.5 s instead of ~5 s, and the 1 M-post pairs build runs ~3 s shorter on top
(benchmarks/pairs.py; docs/benchmarks.md).

- Where: ``$IIPA_HOME/jvm/spark-<key>.jsa`` (150-200 MB; ``IIPA_HOME`` defaults to
  ``~/.cache/iipa``). The key hashes the ``java`` binary and Spark's jars, so an upgrade of
  either records a new archive; the JVM itself also checks the
  classpath and ignores an archive that does not match it. An archive unused for
  :data:`UNUSED_DAYS` days goes when another is recorded.
- When: the first session iipa starts without an archive records the classes it loads
  (``-XX:ArchiveClassesAtExit``); its process then waits at exit for the JVM to write them
  (a few seconds, once) and moves the file into place. One process at a time records (a
  lock file); the others run without an archive meanwhile. ``python -m
  iipa.spark.record_classes`` records one ahead of time (for a container image, say).
- Safety: a half-written archive can crash the JVM that maps it (SIGBUS), so an archive is
  written under a temporary name and renamed only once its JVM has exited normally; a
  session that fails to start with an archive is started again without it, and the archive
  is deleted.
- Only for JVMs iipa launches itself: not under ``spark-submit`` or in a notebook whose JVM
  runs already, not when ``--conf spark.driver.defaultJavaOptions`` replaces iipa's options,
  not when the cache folder's path holds a space or a quote (Spark splits JVM options at
  spaces), and not at all with ``IIPA_SPARK_CDS=0``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

ENV_SWITCH = "IIPA_SPARK_CDS"
# The JVM's CDS messages (a class it cannot archive, a classpath that does not match) go to
# the JVM's stdout by default, which is iipa's: silenced, the archive is an optimisation.
QUIET = "-Xlog:cds*=off"
STALE_LOCK_SECONDS = 3600
EXIT_WAIT_SECONDS = 300
UNUSED_DAYS = 30


@dataclass
class Plan:
    """The JVM options for one session start, and what to do after."""

    options: str = ""
    archive: Path | None = None  # the archive mapped by this JVM
    recording: Path | None = None  # the temporary file this JVM writes at exit
    final: Path | None = None  # where ``recording`` goes once complete
    lock: Path | None = None


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    from iipa.model.weights import iipa_home

    return iipa_home() / "jvm"


def archive_key() -> str | None:
    """A hash of the java binary and Spark's jars (names, sizes, times); None if either is missing."""
    java = _java_binary()
    jars = _spark_jars()
    if java is None or jars is None:
        return None
    h = hashlib.sha256()
    for p in [java, *sorted(jars.iterdir())]:
        with contextlib.suppress(OSError):
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _java_binary() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    java = Path(home) / "bin" / "java" if home else shutil.which("java")
    if java is None or not Path(java).exists():
        return None
    return Path(java).resolve()


def _spark_jars() -> Path | None:
    home = os.environ.get("SPARK_HOME")
    if not home:
        try:
            import pyspark
        except ImportError:
            return None
        home = os.path.dirname(pyspark.__file__)
    jars = Path(home) / "jars"
    return jars if jars.is_dir() else None


def archive_path(key: str) -> Path:
    """Where the archive of ``key`` lives; its lock and temporary files sit beside it."""
    return cache_dir() / f"spark-{key}.jsa"


def lock_path(key: str) -> Path:
    return cache_dir() / f"spark-{key}.lock"


def plan() -> Plan:
    """The options for a JVM about to start: map the archive if there is one, else record one
    if no other process is recording, else nothing."""
    if not enabled():
        return Plan()
    key = archive_key()
    if key is None:
        return Plan()
    folder = cache_dir()
    if any(ch.isspace() or ch in "'\"" for ch in str(folder)):  # Spark splits JVM options at spaces
        return Plan()
    final = archive_path(key)
    if final.is_file() and final.stat().st_size > 0:
        with contextlib.suppress(OSError):
            os.utime(final)  # its last use, for the clean-up of archives no longer used
        return Plan(options=f"-XX:SharedArchiveFile={final} {QUIET}", archive=final)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(lock_path(key))
    except OSError:  # a read-only home: run without an archive
        return Plan()
    if lock is None:
        return Plan()
    for part in folder.glob("spark-*.jsa.part-*"):  # left by a process killed before its JVM wrote
        if not _alive(part.name.rpartition("-")[2]):
            with contextlib.suppress(OSError):
                part.unlink()
    recording = final.with_name(f"{final.name}.part-{os.getpid()}")
    return Plan(options=f"-XX:ArchiveClassesAtExit={recording} {QUIET}", recording=recording, final=final, lock=lock)


def recording_elsewhere(key: str) -> bool:
    """Whether a live process holds the lock of ``key``'s archive (it records it now)."""
    lock = lock_path(key)
    return lock.is_file() and not _stale(lock)


def _take_lock(lock: Path) -> Path | None:
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(lock):
                return None
            with contextlib.suppress(OSError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    return None


def _stale(lock: Path) -> bool:
    """A lock whose process is gone, or older than :data:`STALE_LOCK_SECONDS`."""
    try:
        age = time.time() - lock.stat().st_mtime
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return True
    return age > STALE_LOCK_SECONDS or not _alive(pid)


def _alive(pid) -> bool:
    try:
        pid = int(pid)
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def started(p: Plan) -> None:
    """After the JVM started: when it records, have this process wait for it at exit."""
    if p.recording is not None:
        atexit.register(_finish_recording, p)


def failed(p: Plan) -> None:
    """The JVM did not start: drop the archive it mapped (it may be damaged) or the lock."""
    if p.archive is not None:
        with contextlib.suppress(OSError):
            p.archive.unlink()
    _release(p)


def _release(p: Plan) -> None:
    if p.recording is not None:
        with contextlib.suppress(OSError):
            p.recording.unlink()
    if p.lock is not None:
        with contextlib.suppress(OSError):
            p.lock.unlink()


def _finish_recording(p: Plan) -> None:
    """At exit: stop Spark, let the JVM exit (it writes the archive then) and wait for it; move
    the archive into place only if the JVM exited normally."""
    try:
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        proc = getattr(gateway, "proc", None)
        if SparkContext._active_spark_context is not None:
            with contextlib.suppress(Exception):
                SparkContext._active_spark_context.stop()
        if proc is None:
            return
        with contextlib.suppress(Exception):
            gateway.shutdown()
        with contextlib.suppress(OSError):
            proc.stdin.close()  # Spark's gateway exits when its stdin closes
        try:
            code = proc.wait(timeout=EXIT_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - a JVM that does not exit: no archive from it
            return
        if code == 0 and p.recording.is_file() and p.recording.stat().st_size > 0:
            os.replace(p.recording, p.final)
            for old in p.final.parent.glob("spark-*.jsa"):  # another java's or Spark's, unused for long
                with contextlib.suppress(OSError):
                    if old != p.final and time.time() - old.stat().st_mtime > UNUSED_DAYS * 86400:
                        old.unlink()
    finally:
        _release(p)
