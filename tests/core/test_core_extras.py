"""Without an extra, each command that needs it says so in one line with the pip line
(exit 2), never a traceback. The extras' modules are blocked here (``sys.modules[name] =
None`` makes both ``import`` and ``find_spec`` miss them), so the check also runs in the
full install; in CI's core install they are really absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iipa.extras import EXTRA_OF

BLOCKED = sorted(EXTRA_OF)
RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from iipa.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("argv", "extra"), [
    ("train --pairs p.csv --images img --out run", "torch"),
    ("explain {photo} --out cams", "torch"),
    ("demo --quick", "torch"),
    ("export --output m.onnx", "torch"),
    ("models", "torch"),
    ("score {photo} --runtime torch", "torch"),
    ("pairs build posts.csv --out built", "pairs"),
    ("simulate --out crawl", "pairs"),
    ("fetch pairs.parquet --out img", "pairs"),
    ("serve", "serve"),
    ("study init --pairs p.csv --images img --db s.sqlite", "study"),
], ids=lambda v: v.split()[0] if " " in v else v)
def test_a_missing_extra_is_one_line_with_the_pip_line(argv, extra, tmp_path):
    from _photo import synthetic_photo

    photo = tmp_path / "photo.jpg"
    synthetic_photo(0).save(photo)
    proc = subprocess.run([sys.executable, "-c", RUNNER, ",".join(BLOCKED), *argv.format(photo=photo).split()],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"needs the {extra} extra: pip install 'iipa[{extra}]'" in last, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # nothing left behind
