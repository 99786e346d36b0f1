"""`--out` naming a file is a clear error (exit 2), never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv", [["simulate", "--users", "5"], ["demo"]])
def test_out_naming_a_file_exits_2(tmp_path, run_cli, argv):
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "sub"):
        code, _, err = run_cli(*argv, "--out", out)
        assert code == 2 and "Traceback" not in err and "is --out a file?" in err, err
