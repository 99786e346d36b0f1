"""Every command × {the core install, the core + one extra}: a command whose extra is missing
says which one in its last line, with the pip line (exit 2), and names no other; with its
extras present no command talks about extras at all. The table of what each command needs
is ``iipa.extras.COMMAND_EXTRAS``; every command of the CLI must be in it.

An install is simulated by blocking the top-level modules of the absent extras
(``sys.modules[name] = None``: ``import`` and ``find_spec`` both miss them). All cases run in
one child process, one install after another (the iipa modules are imported afresh for each,
so none keeps a module of an earlier install), because starting an interpreter per case would
cost seconds each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from iipa.cli import build_parser
from iipa.extras import COMMAND_EXTRAS, EXTRA_OF, INCLUDES, MODULES, modules_of, pip_line

# A command line per table entry that passes argument parsing, reaches the extras check,
# and, when the extras are there, fails fast on a missing input (no real work is done).
ARGV = {
    "score": "score missing.jpg",
    "score --engine spark": "score missing.jpg --engine spark",
    "rank": "rank missing.jpg",
    "rank --heatmaps": "rank missing.jpg --heatmaps --report .",
    "compare": "compare missing-a.jpg missing-b.jpg --device cpu",
    "evaluate": "evaluate --pairs missing.csv --images .",
    "evaluate --pairs *.parquet": "evaluate --pairs bad.parquet --images .",
    "model-info": "model-info --model README.md",
    "weights": "weights path no-such-weights",
    "models": "models",
    "explain": "explain missing.jpg --out cams",
    "train": "train --pairs missing.csv --images . --out run --recipe paper --views 5",
    "experiment": "experiment baseline --posts missing.csv --pairs missing.csv --images . --out exp --recipe default",
    "demo": "demo --backbone no-such-backbone",
    "export": "export --output m.txt",
    "pairs": "pairs build missing.csv --out built",
    "pairs build --engine spark": "pairs build missing.csv --out built --engine spark --threads 2",
    "fetch": "fetch missing.csv --out img",
    "simulate": "simulate --out crawl --size 4",
    "serve": "serve --api-key-env IIPA_TEST_UNSET_VARIABLE",
    "study": "study init --pairs missing.csv --images . --db s.sqlite",
}
INSTALLS = {"core": (), **{extra: (extra,) for extra in MODULES}}

RUNNER = r"""
import contextlib, io, json, sys

groups = json.loads(sys.argv[1])
kept = {}
results = []
for blocked, argvs in groups:
    for name, module in kept.items():  # the previous install's blocked modules come back
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    kept = {name: sys.modules.get(name) for name in blocked}
    for name in blocked:
        sys.modules[name] = None
    for name in [m for m in sys.modules if m == "iipa" or m.startswith("iipa.")]:
        del sys.modules[name]
    from iipa.cli import main
    for argv in argvs:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
        results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def _leaves(parser, prefix=()):
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*prefix, name))


def test_every_command_is_in_the_table():
    commands = {leaf[0] for leaf in _leaves(build_parser())}
    listed = {key.split()[0] for key in COMMAND_EXTRAS}
    assert commands == listed, f"not in iipa.extras.COMMAND_EXTRAS: {commands - listed}; gone: {listed - commands}"
    assert set(ARGV) == set(COMMAND_EXTRAS)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{(install, table entry): (exit code, stderr)} from one child process."""
    cwd = tmp_path_factory.mktemp("extras")
    (cwd / "README.md").write_text("# not a model\n")
    (cwd / "bad.parquet").write_bytes(b"not parquet")
    (cwd / "best.pt").write_bytes(b"PK\x03\x04 a zip, as torch.save writes")
    (cwd / "best.onnx").write_bytes(b"its export")
    every = sorted(EXTRA_OF)
    groups, keys = [], []
    for install, extras in INSTALLS.items():
        installed = {e for extra in extras for e in (extra, *INCLUDES.get(extra, ()))}
        present = {m for extra in extras for m in modules_of(extra)}
        present |= {m for m, extra in EXTRA_OF.items() if extra in installed}  # aliases (python_multipart)
        # A command that needs no extra runs in the core install only: more modules cannot
        # make it miss one (and each such run loads the model).
        cases = [key for key, needs in COMMAND_EXTRAS.items() if needs or install == "core"]
        argvs = [ARGV[key].split() for key in cases]
        if install == "core":
            argvs.append(["score", "README.md", "--model", "best.pt"])
            cases.append("checkpoint with its export beside it")
        groups.append([[m for m in every if m not in present], argvs])
        keys += [(install, key) for key in cases]
    env = {**os.environ, "IIPA_OFFLINE": "1"}  # no case may reach the network
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(groups)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {key: (r["code"], r["stderr"]) for key, r in zip(keys, results, strict=True)}


@pytest.mark.parametrize("install", list(INSTALLS))
def test_each_command_names_the_extra_it_misses(outcomes, install):
    present = {e for extra in INSTALLS[install] for e in (extra, *INCLUDES.get(extra, ()))}
    wrong = []
    for key, needs in COMMAND_EXTRAS.items():
        if (install, key) not in outcomes:
            continue
        code, err = outcomes[install, key]
        missing = [e for e in needs if e not in present]
        said = [e for e in MODULES if f"needs the {e} extra" in err]
        if missing:
            last = (err.strip().splitlines() or [""])[-1]
            if code != 2 or said != [missing[0]] or pip_line(missing[0]) not in last or "Traceback" in err:
                wrong.append(f"{key}: expected the {missing[0]} extra named, got exit {code}: {err.strip()[-300:]}")
        elif said or "Traceback" in err:
            wrong.append(f"{key}: has what it needs, yet: {err.strip()[-300:]}")
    assert not wrong, f"install {install}:\n" + "\n".join(wrong)


def test_wrong_files_and_defaults_get_their_own_message(outcomes):
    code, err = outcomes["core", "model-info"]
    assert code == 2 and "README.md: not a model file" in err, err  # not "needs torch": it is no checkpoint
    code, err = outcomes["core", "demo"]  # no usage, no word of --backbone: the user gave none
    assert err.startswith(f"iipa demo: error: iipa demo needs the torch extra: {pip_line('torch')} (missing: torch"), err
    assert err.count("\n") == 1, err
    code, err = outcomes["core", "score --engine spark"]
    assert "needs the spark extra" in err and "pairs extra" not in err, err
    code, err = outcomes["core", "checkpoint with its export beside it"]
    assert code == 2 and "needs the torch extra" in err and "the ONNX export beside it" in err, err
    assert "--model best.onnx" in err, err
