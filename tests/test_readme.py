"""The README is true: every shell example names commands and flags that exist (parsed by the
real parser, in-process), every option it mentions exists, its Python snippets run (on tiny
local files, no network), and its profiles table lists every registered profile."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from iipa.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Options of other programs that the README shows (pip, torchrun, a removed benchmark option that
# the README names as such); the benchmark scripts' own options are read from their source.
FOREIGN_OPTIONS = {"--index-url", "--nproc_per_node", "--dry-run", "--memory-run"} | {
    opt for script in (ROOT / "benchmarks").glob("*.py")
    for opt in re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text(encoding="utf-8"))}


def fenced(langs: set[str]) -> list[tuple[int, str]]:
    """(first line number, text) of every fenced block in one of ``langs``."""
    blocks, lines, i = [], README.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if m.group(1) in langs:
                blocks.append((i + 2, "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return blocks


def shell_commands() -> list[tuple[int, list[str]]]:
    """Every simple command in the shell blocks, continuation lines joined, comments dropped."""
    out = []
    for start, text in fenced({"bash", "sh", "shell", "console"}):
        for n, line in enumerate(text.replace("\\\n", " ").splitlines()):
            tokens = shlex.split(line, comments=True)
            command: list[str] = []
            for tok in [*tokens, ";"]:
                if tok in ("|", "&&", "||", ";"):
                    if command:
                        out.append((start + n, command))
                    command = []
                elif command or not re.match(r"^[A-Z_][A-Z0-9_]*=", tok):  # skip VAR=value prefixes
                    command.append(tok)
    return out


def iipa_argv(command: list[str]) -> list[str] | None:
    if command[0] == "iipa":
        return command[1:]
    if "-m" in command and command[command.index("-m") + 1:][:1] == ["iipa"]:  # torchrun/python -m iipa
        return command[command.index("-m") + 2:]
    return None


def all_parsers(parser: argparse.ArgumentParser | None = None):
    parser = parser or build_parser()
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


COMMANDS = shell_commands()
IIPA_LINES = [(n, argv) for n, c in COMMANDS if (argv := iipa_argv(c)) is not None]


def test_the_readme_has_examples_to_check():
    assert len(IIPA_LINES) > 40 and len(fenced({"python"})) >= 4


@pytest.mark.parametrize("line,argv", IIPA_LINES, ids=[f"line{n}" for n, _ in IIPA_LINES])
def test_shell_example_parses(line, argv):
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"README line {line}: `iipa {shlex.join(argv)}` does not parse"
        return
    assert not extras, f"README line {line}: unknown arguments {extras} in `iipa {shlex.join(argv)}`"
    assert getattr(args, "_run", None), f"README line {line}: `iipa {shlex.join(argv)}` names no command"


def test_other_commands_in_examples_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for line, command in COMMANDS:
        if command[0] == "make":
            for target in command[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"README line {line}: make {target}"
        if command[0] in ("python", "python3") and command[1:2] and command[1].endswith(".py"):
            assert (ROOT / command[1]).is_file(), f"README line {line}: {command[1]}"


def test_every_option_the_readme_mentions_exists():
    known = {s for p in all_parsers() for a in p._actions for s in a.option_strings}
    prose = re.sub(r"```python\n.*?```", "", README, flags=re.S)
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", prose))
    unknown = sorted(mentioned - known - FOREIGN_OPTIONS)
    assert not unknown, f"options in the README that no iipa command has: {unknown}"


def test_profiles_table_lists_every_profile():
    from iipa.profiles import list_profiles

    for name in list_profiles():
        assert f"| `{name}` |" in README, f"profile {name} is missing from the README's profiles table"


@pytest.fixture(scope="module")
def snippet_dir(tmp_path_factory, photos):
    """The files the snippets name: run/best.pt, a.jpg, b.jpg, photo.jpg, crawl/ (no network)."""
    import torch
    from PIL import Image

    from iipa import PopularityNet, save_checkpoint
    from iipa.simulate import SimConfig, write_crawl

    root = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    (root / "run").mkdir()
    save_checkpoint(PopularityNet("tiny", reference={"mean": 0.0, "std": 1.0, "source": "test"}),
                    root / "run" / "best.pt")
    for name, key in (("a.jpg", "chelsea"), ("b.jpg", "coffee"), ("photo.jpg", "astronaut")):
        Image.fromarray(photos[key]).resize((160, 120)).save(root / name)
    files = write_crawl(root / "sim-crawl", SimConfig(users=300, posts_per_user=20, seed=0))
    (root / "crawl").mkdir()
    files.posts.rename(root / "crawl" / "posts.parquet")  # a crawl folder holds posts files only
    return root


@pytest.mark.slow
@pytest.mark.parametrize("line,code", fenced({"python"}), ids=[f"line{n}" for n, _ in fenced({"python"})])
def test_python_snippet_runs(line, code, snippet_dir):
    proc = subprocess.run([sys.executable, "-c", code], cwd=snippet_dir, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README snippet at line {line} failed:\n{proc.stderr[-3000:]}"
