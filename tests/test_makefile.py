"""`make install` installs the core, `make demo` the core with [torch] and `make test` everything;
each set installs once, an edit of pyproject.toml reinstalls it, and switching between them
installs only what is missing.
Runs the real Makefile against a stand-in .venv whose python and iipa only log their calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    if shutil.which("make") is None and os.environ.get("CI") != "true":
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "iipa"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/calls.log"\n')
        script.chmod(0o755)
    os.utime(tmp_path / "pyproject.toml", (1_000_000_000, 1_000_000_000))
    return tmp_path


def _make(project: Path, target: str) -> list[str]:
    log = project / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    proc = subprocess.run(["make", "-s", target], cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    after = log.read_text().splitlines() if log.exists() else []
    return after[len(before):]


def test_demo_installs_torch_and_test_everything_each_once(project):
    assert _make(project, "install") == ["python -m pip install --quiet -e ."]
    assert _make(project, "demo") == ["python -m pip install --quiet -e .[torch]", "iipa demo"]
    assert _make(project, "demo") == ["iipa demo"]  # installed: nothing new
    assert _make(project, "install") == []  # [torch] contains the core
    assert _make(project, "install-all") == ["python -m pip install --quiet -e .[all,dev]"]
    assert _make(project, "install-all") == []
    assert _make(project, "demo") == ["iipa demo"]  # everything contains [torch]
    later = time.time() + 10
    os.utime(project / "pyproject.toml", (later, later))  # an edit: newer than both stamps
    assert _make(project, "install") == ["python -m pip install --quiet -e ."]
    assert _make(project, "install-all") == ["python -m pip install --quiet -e .[all,dev]"]
