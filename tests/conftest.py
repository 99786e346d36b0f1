"""Shared fixtures: tiny models, real photographs, an isolated IIPA_HOME, CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Subprocesses (``python -m iipa``, torchrun, servers) must import this checkout's code,
# unless the tests check an installed package (.ci/run's core install: IIPA_TEST_INSTALLED=1).
if not os.environ.get("IIPA_TEST_INSTALLED"):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
# ``make test`` runs two pytest-xdist workers (docs/development.md): each gets one thread for
# PyTorch, its subprocesses too (OMP_NUM_THREADS), so that two workers do not share each core
# between four spinning threads.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
try:  # tests/core also runs in the core install, which has no PyTorch
    import torch
except ModuleNotFoundError:
    torch = None
else:
    torch.set_num_threads(1 if WORKER else min(2, torch.get_num_threads()))


def _run_env(tmp_path_factory) -> dict[str, str]:
    """Never read or write the user's ~/.cache/iipa from a test: the run's own IIPA_HOME, one
    for all its xdist workers (each has its own basetemp inside the run's). Progress lines
    off: a slow machine would add them to the stderr a test compares (tests/test_progress.py
    turns them on)."""
    run = tmp_path_factory.getbasetemp()
    return {"IIPA_HOME": str((run.parent if WORKER else run) / "iipa_home"), "IIPA_PROGRESS_SECONDS": "0"}


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory):
    """The run's environment for the session fixtures too (the Spark session, the trained
    models): pytest sets up session fixtures before any function fixture, so without this the
    run's first Spark JVM recorded its class-data archive into the user's ~/.cache/iipa."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _run_env(tmp_path_factory).items():
            patch.setenv(key, value)
        yield


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch, class_archive):
    """The run's environment again for every test (one may have changed it by hand)."""
    for key, value in _run_env(tmp_path_factory).items():
        monkeypatch.setenv(key, value)


@dataclass
class Recording:
    """``python -m iipa.spark.record_classes`` running in the background (in each xdist
    worker: the first to take the lock records, the others end at once)."""

    proc: object
    _result: tuple[int, str, str] | None = None

    def result(self, timeout: float = 600) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the process has ended (kept: a second
        ``communicate`` would see none)."""
        if self._result is None:
            out, err = self.proc.communicate(timeout=timeout)
            self._result = (self.proc.returncode, out, err)
        return self._result

    def archive(self, timeout: float = 600) -> Path | None:
        """The run's archive once written, by this process or another worker's; None if
        none was (a failed recording: the JVMs run without)."""
        from iipa.spark import classcache

        self.result(timeout)
        key, deadline = classcache.archive_key(), time.monotonic() + timeout
        while classcache.recording_elsewhere(key) and time.monotonic() < deadline:
            time.sleep(0.2)
        final = classcache.archive_path(key)
        return final if final.is_file() else None


@pytest.fixture(scope="session")
def class_archive(tmp_path_factory):
    """The run's JVM class-data archive (iipa.spark.classcache), recorded in the run's
    IIPA_HOME by ``python -m iipa.spark.record_classes`` in the background from the first
    test on, as a user's first Spark run would: the run's Spark session waits for it (so it
    maps the archive whichever test comes first), the other Spark JVMs map it once written,
    and tests/test_spark_classcache.py checks the recording and a JVM mapping the file.
    None without Java or pyspark (the core install's run)."""
    import importlib.util
    import shutil
    import subprocess

    if shutil.which("java") is None or importlib.util.find_spec("pyspark") is None:
        yield None
        return
    env = {**os.environ, **_run_env(tmp_path_factory), "IIPA_SPARK_CDS": "1"}
    recording = Recording(subprocess.Popen([sys.executable, "-m", "iipa.spark.record_classes"], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    yield recording
    with contextlib.suppress(subprocess.TimeoutExpired):
        recording.result(timeout=120)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs shipped by scikit-image (RGB uint8)."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")}


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, photos) -> Path:
    """A folder of JPEG photos."""
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    for name, arr in photos.items():
        Image.fromarray(arr).save(d / f"{name}.jpg", quality=90)
    return d


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved random-init ``tiny`` model with a reference distribution."""
    import torch

    from iipa import PopularityNet, save_checkpoint

    torch.manual_seed(0)
    model = PopularityNet("tiny", reference={"mean": 0.0, "std": 1.0, "source": "test"})
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def run_cli(capsys):
    """Run ``iipa`` in-process: returns (exit code, stdout, stderr)."""
    from iipa.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return run


def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def sim_crawl(tmp_path_factory) -> tuple[Path, Path]:
    """A small simulated crawl (40 accounts x 12 posts, seed 0) and its rendered 40 px photos."""
    import pandas as pd

    from iipa.simulate import SimConfig, render_images, write_crawl

    root = tmp_path_factory.mktemp("crawl")
    files = write_crawl(root / "crawl", SimConfig(users=40, posts_per_user=12, seed=0))
    ids = pd.read_parquet(files.posts)["post_id"].astype(str).tolist()
    render_images(ids, files.truth, root / "images", size=40)
    return files.posts, root / "images"



@dataclass(frozen=True)
class CliRun:
    """One finished ``iipa`` command: its arguments, exit code and output, and its --out folder."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    out: Path


def run_main(*argv: str) -> tuple[int, str, str]:
    """``iipa`` in-process with its stdout and stderr captured (for session fixtures, where
    pytest's capsys is not available)."""
    from iipa.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def sim_trained_run(tmp_path_factory, sim_crawl) -> CliRun:
    """`iipa train --posts` (the default recipe, tiny backbone) on the simulated crawl, with
    quality pairs: trained once per test run for every test that reads such a run
    (test_train_posts.py, test_train_calibrated.py). ``argv`` lacks ``--out``: add one to train
    the same run again with a changed option."""
    posts, images = sim_crawl
    argv = ("train", "--posts", str(posts), "--images", str(images), "--backbone", "tiny", "--pretrained", "none",
            "--profile", "small", "--domain", "simulated", "--no-progress", "--quality-pairs", "0.5",
            "--quality-images", "1")
    out = tmp_path_factory.mktemp("sim_trained") / "run"
    code, stdout, stderr = run_main(*argv, "--out", str(out))
    return CliRun(argv, code, stdout, stderr, out)


# One local Spark session for the whole run. pyspark keeps one JVM per Python process anyway;
# what each module's own session added was a SparkContext start and stop (seconds each). Built
# by iipa.pairs.spark.get_spark, so it carries the pairs engine's defaults (its app name,
# PAIRS_CONF, no C1-only JVM options) with 5 shuffle partitions over PAIRS_CONF's 8 (tiny test
# tables); iipa's scoring on Spark uses an active session as it is, so it runs here too.
SPARK_TEST_CONF = {"spark.sql.shuffle.partitions": "5", "spark.ui.showConsoleProgress": "false"}


@pytest.fixture(scope="session")
def spark_session(class_archive):
    """The run's Spark session (local[2]), started once the run's class-data archive is
    written (at once in a whole run: it is, long before); skips without Java or pyspark,
    fails under CI=true."""
    from _spark import require_spark

    pairs_spark = require_spark("iipa.pairs.spark")
    if class_archive is not None:
        class_archive.archive()
    session = pairs_spark.get_spark("local[2]", SPARK_TEST_CONF)
    yield session
    session.stop()



def pytest_collection_modifyitems(config, items):
    """The tests that use the run's Spark session run in one xdist worker, which starts it once."""
    for item in items:
        if "spark_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("spark"))
