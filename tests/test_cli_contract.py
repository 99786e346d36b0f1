"""The CLI contract, checked for every sub-command: usage errors, exit codes, no tracebacks,
closed pipes, flag spelling, lazy imports (what `--help` imports, not how long it takes: that is
benchmarks/cli_help.py's job), nothing left behind on failure."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iipa.cli import build_parser, main

# One bad value per leaf command (argparse rejects it, or the pre-run checks do: exit 2).
BAD_VALUES = {
    ("compare",): ["a.jpg", "b.jpg", "--device", "gpu"],
    ("demo",): ["--epochs", "0"],
    ("evaluate",): ["--pairs", "p.parquet", "--images", "img", "--crops", "3"],
    ("experiment", "architectures"): ["--pairs", "p", "--images", "i", "--out", "o", "--crops", "3"],
    ("experiment", "baseline"): ["--posts", "p", "--pairs", "p", "--images", "i", "--out", "o", "--epochs", "0"],
    ("experiment", "label-noise"): ["--pairs", "p", "--images", "i", "--out", "o", "--levels", "200"],
    ("explain",): ["a.jpg", "--out", "o", "--alpha", "2"],
    ("export",): ["-o", "m.onnx", "--opset", "0"],
    ("fetch",): ["t.csv", "--out", "o", "--workers", "0"],
    ("model-info",): ["--format", "xml"],
    ("models",): ["--format", "xml"],  # takes no option at all: any value is refused
    ("pairs", "build"): ["p.csv", "--out", "o", "--min-likes", "-1"],
    ("pairs", "import-authors"): ["a.csv", "-o", "x.parquet", "--split", "holdout"],
    ("pairs", "stats"): ["p.parquet", "--format", "xml"],
    ("rank",): ["a.jpg", "--top", "0"],
    ("score",): ["a.jpg", "--batch-size", "0"],
    ("serve",): ["--port", "-1"],
    ("simulate",): ["--out", "o", "--users", "0"],
    ("study", "analyze"): ["--db", "d", "--out", "o", "--examples", "-1"],
    ("study", "close"): ["--db", "no-such-study.sqlite"],
    ("study", "export"): ["--db", "d", "--table", "votes"],
    ("study", "init"): ["--pairs", "p", "--images", "i", "--db", "d", "--n", "0"],
    ("study", "serve"): ["--db", "d", "--port", "http"],
    ("train",): ["--pairs", "p", "--images", "i", "--out", "o", "--epochs", "0"],
    ("weights", "download"): ["no-such-weights"],
    ("weights", "list"): ["--format", "xml"],
    ("weights", "path"): ["no-such-weights"],
    ("weights", "verify"): ["--format", "xml"],
}
MODEL_COMMANDS = {("score",), ("rank",), ("explain",), ("evaluate",), ("export",), ("serve",), ("compare",),
                  ("model-info",), ("study", "analyze")}
OUTPUT_FORMATS = {"table", "csv", "json", "jsonl", "text", "markdown"}
# What building the parsers and printing any help must not import: each costs tens of
# milliseconds to seconds (torch), and `iipa --help` should answer at once on any machine.
HEAVY_MODULES = ("numpy", "PIL", "pandas", "torch", "onnxruntime", "http.client", "urllib.request",
                 "scipy", "pyarrow", "fastapi", "duckdb", "pyspark")


def _subparsers(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def leaf_parsers(parser=None, path=()):
    """(command path, parser) for every runnable sub-command, nested ones included."""
    parser = parser or build_parser()
    subs = _subparsers(parser)
    if not subs:
        return [(path, parser)]
    return [leaf for name, p in subs[0].choices.items() for leaf in leaf_parsers(p, (*path, name))]


LEAVES = leaf_parsers()


def test_every_leaf_command_has_a_bad_value_case():
    assert {path for path, _ in LEAVES} == set(BAD_VALUES)


@pytest.mark.parametrize("path", sorted(BAD_VALUES), ids=" ".join)
def test_bad_flag_and_bad_value_exit_2_with_the_subcommands_usage(path, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*path, "--no-such-flag")
    assert code == 2 and f"usage: iipa {' '.join(path)}" in err and "Traceback" not in err, err
    code, _, err = run_cli(*path, *BAD_VALUES[path])
    assert code == 2 and "Traceback" not in err and "error:" in err, err
    assert sorted(os.listdir(tmp_path)) == [], "a failed command left files behind"


def test_flag_spelling_is_one_contract():
    for path, parser in LEAVES:
        assert parser.allow_abbrev is False, path
        options = {s: a for a in parser._actions for s in a.option_strings}
        where = " ".join(path)
        assert "--json" not in options, f"{where}: --json (use --format json)"
        if "-o" in options:
            assert "--output" in options["-o"].option_strings, f"{where}: -o must mean --output FILE"
        if "--out" in options:
            assert options["--out"].option_strings == ["--out"], f"{where}: --out is the folder, without -o"
            assert options["--out"].metavar == "DIR", f"{where}: --out names a folder"
        if "--format" in options:
            assert set(options["--format"].choices) <= OUTPUT_FORMATS, f"{where}: --format is an output format"
        if path in MODEL_COMMANDS:
            assert "--model" in options, f"{where} uses a model: --model"


# Every command that scores images loads its model the same way. serve too, except that its
# micro-batcher's --max-batch-size and its decoding pool stand for --batch-size and --workers
# (a batch there is gathered from concurrent requests), and its --max-pixels has a server's default.
SCORING_COMMANDS = {("score",), ("rank",), ("compare",), ("evaluate",), ("explain",)}
LOADING = {"--model", "--device", "--precision", "--runtime", "--optimize", "--offline", "--crops",
           "--batch-size", "--workers", "--max-pixels"}


def test_every_command_that_loads_a_model_takes_the_same_loading_options():
    leaves = dict(LEAVES)
    for path in SCORING_COMMANDS:
        options = {s for a in leaves[path]._actions for s in a.option_strings}
        assert LOADING <= options, f"{' '.join(path)} lacks {sorted(LOADING - options)}"
    serve = {s for a in leaves[("serve",)]._actions for s in a.option_strings}
    assert LOADING - {"--batch-size", "--workers"} <= serve and "--max-batch-size" in serve
    assert "--no-recursive" in {s for a in leaves[("rank",)]._actions for s in a.option_strings}


def test_no_prefix_matching(run_cli, tmp_path):
    code, _, err = run_cli("score", "a.jpg", "--out", tmp_path / "x.csv")  # not --output
    assert code == 2 and "unrecognized arguments: --out" in err and not (tmp_path / "x.csv").exists()
    code, _, err = run_cli("score", "a.jpg", "--batch", "4")
    assert code == 2 and "unrecognized arguments: --batch" in err


def test_runtime_checks_happen_before_any_work(run_cli, tmp_path, photo_dir, tiny_checkpoint):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    out = tmp_path / "new" / "heatmaps"
    code, _, err = run_cli("explain", photo_dir, "--out", out, "--model", text)
    assert code == 2 and "not a model file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()
    code, _, err = run_cli("score", photo_dir, "--model", tmp_path / "missing.pt")
    assert code == 2 and "no such file" in err
    code, _, err = run_cli("score", photo_dir, "--model", "no-such-weights")
    assert code == 2 and "authors-resnet50" in err  # lists the known names
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_cli("score", photo_dir, "--model", tiny_checkpoint, "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in err
    code, _, err = run_cli("demo", "--backbone", "resnet34", "--out", tmp_path / "demo")
    assert code == 2 and "unknown backbone 'resnet34'" in err and not (tmp_path / "demo").exists()


def test_failure_after_creating_the_output_folder_leaves_nothing(run_cli, tmp_path):
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,likes\n1,100\n")  # required columns missing
    code, _, err = run_cli("pairs", "build", posts, "--out", tmp_path / "made" / "pdip")
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "made").exists()


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(run_cli, monkeypatch):
    import iipa.commands.models as models

    def boom(args):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(models, "run", boom)
    code, _, err = run_cli("models")
    assert code == 1 and err.strip() == (
        "iipa models: error: unexpected ZeroDivisionError: simulated bug; IIPA_DEBUG=1 shows the traceback")
    monkeypatch.setenv("IIPA_DEBUG", "1")
    code, _, err = run_cli("models")
    assert code == 1 and "Traceback" in err and "simulated bug" in err


def test_ctrl_c_exits_130(run_cli, monkeypatch):
    import iipa.commands.models as models

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "run", interrupted)
    code, _, err = run_cli("models")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_missing_extra_names_the_pip_command(run_cli, monkeypatch):
    import iipa.commands.models as models

    def needs_spark(args):
        raise ModuleNotFoundError("No module named 'pyspark'", name="pyspark")

    monkeypatch.setattr(models, "run", needs_spark)
    code, _, err = run_cli("models")
    assert code == 2 and "pip install 'iipa[spark]'" in err


def _closed_stdout(*argv: str, cwd: Path | None = None, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run iipa with a stdout whose reader has gone (like `| head -0`); ``python``: interpreter options."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, *python, "-m", "iipa", *argv], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=180, cwd=cwd)
    finally:
        os.close(w)


def imported_modules(importtime_stderr: str) -> tuple[set[str], str]:
    """(modules ``python -X importtime`` reported, the rest of stderr)."""
    modules, rest = set(), []
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:"):
            modules.add(line.rsplit("|", 1)[-1].strip())
        else:
            rest.append(line)
    return modules, "\n".join(rest)


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES))


def test_the_import_check_sees_an_import():
    """The check below can fail: importtime's report names the modules a run imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import http.client"],
                          capture_output=True, text=True, timeout=60)
    modules, rest = imported_modules(proc.stderr)
    assert heavy(modules) == ["http.client"] and rest == "", proc.stderr


@pytest.mark.parametrize("path", [(), *sorted(BAD_VALUES)], ids=lambda p: " ".join(p) or "iipa")
def test_help_imports_nothing_heavy_and_ends_quietly_into_a_closed_pipe(path):
    """`iipa [COMMAND] --help` in a fresh interpreter: no numpy, PIL, torch, http.client...
    (the parser path is fast by construction), and a closed stdout ends it quietly."""
    proc = _closed_stdout(*path, "--help", python=("-X", "importtime"))
    modules, stderr = imported_modules(proc.stderr)
    assert proc.returncode == 0 and stderr == "", stderr
    assert "iipa.cli" in modules, "importtime reported nothing: the check would pass vacuously"
    assert heavy(modules) == [], f"iipa {' '.join(path)} --help imported {heavy(modules)}"


def test_real_output_into_a_closed_pipe_ends_quietly(photo_dir):
    # The default model (its packaged ONNX file, no torch): the pipe is the CLI's business, not
    # the backend's, and a child importing torch costs seconds of CPU.
    for argv in (["models"], ["weights", "list"], ["score", str(photo_dir), "-f", "csv", "--workers", "0"],
                 ["model-info"]):
        proc = _closed_stdout(*argv)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, (
            argv, proc.stderr)


def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys; from iipa.cli import build_parser; build_parser(); "
            f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"building the parser imported {proc.stdout.strip()}"


def test_the_parsers_constants_are_the_librarys_own():
    """One home (iipa.constants, iipa.inputpolicy): the library modules import the values the parsers show."""
    import iipa.commands._common as common
    import iipa.commands.evaluate as evaluate_cmd
    import iipa.commands.experiment as experiment_cmd
    from iipa import constants, images, inputpolicy, profiles
    from iipa.model import weights
    from iipa.pairs import table
    from iipa.train import config, experiments

    assert common.DEFAULT_MAX_PIXELS is images.DEFAULT_MAX_PIXELS is inputpolicy.DEFAULT_MAX_PIXELS
    assert common.CROPS is profiles.CROPS is constants.CROPS and config.DECODES is profiles.DECODES
    assert evaluate_cmd.SPLITS is table.SPLITS is constants.SPLITS
    assert common.DEFAULT_MODEL is weights.DEFAULT_MODEL is constants.DEFAULT_MODEL
    assert common.RUNTIMES is constants.RUNTIMES and common.OPTIMIZE is constants.OPTIMIZE
    assert experiment_cmd.NOISE_LEVELS is experiments.NOISE_LEVELS is constants.NOISE_LEVELS
    assert experiment_cmd.ARCHITECTURES is experiments.ARCHITECTURES is constants.ARCHITECTURES


def test_main_without_a_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: iipa" in capsys.readouterr().err
