"""The README and docs/ are true: every shell example names commands and flags that exist (parsed
by the real parser, in-process), every option they mention exists, their Python snippets run (on
tiny local files, no network), the profiles table lists every registered profile, and every
relative link points at a file (and heading) that exists."""

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
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
# Options of other programs that the docs show (pip, torchrun, spark-submit, pytest-xdist, a removed benchmark
# option that the README names as such); the benchmark scripts' own options are read from their source.
FOREIGN_OPTIONS = {"--index-url", "--nproc_per_node", "--dry-run", "--memory-run", "--deploy-mode", "--packages",
                   "--dist"} | {
    opt for script in (ROOT / "benchmarks").glob("*.py")
    for opt in re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text(encoding="utf-8"))}


def fenced(langs: set[str]) -> list[tuple[str, str]]:
    """("file:first line", text) of every fenced block in one of ``langs``, README and docs/."""
    blocks = []
    for name, text in DOCS.items():
        lines, i = text.splitlines(), 0
        while i < len(lines):
            m = re.match(r"^```(\w*)\s*$", lines[i])
            if m:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                if m.group(1) in langs:
                    blocks.append((f"{name}:{i + 2}", "\n".join(lines[i + 1:end])))
                i = end
            i += 1
    return blocks


def shell_commands() -> list[tuple[str, list[str]]]:
    """Every simple command in the shell blocks, continuation lines joined, comments dropped."""
    out = []
    for start, text in fenced({"bash", "sh", "shell", "console"}):
        for n, line in enumerate(text.replace("\\\n", " ").splitlines()):
            tokens = shlex.split(line, comments=True)
            command: list[str] = []
            for tok in [*tokens, ";"]:
                if tok in ("|", "&&", "||", ";"):
                    if command:
                        file, first = start.rsplit(":", 1)
                        out.append((f"{file}:{int(first) + n}", command))
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


@pytest.mark.parametrize("line,argv", IIPA_LINES, ids=[n for n, _ in IIPA_LINES])
def test_shell_example_parses(line, argv):
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{line}: `iipa {shlex.join(argv)}` does not parse"
        return
    assert not extras, f"{line}: unknown arguments {extras} in `iipa {shlex.join(argv)}`"
    assert getattr(args, "_run", None), f"{line}: `iipa {shlex.join(argv)}` names no command"


def test_other_commands_in_examples_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for line, command in COMMANDS:
        if command[0] == "make":
            for target in command[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{line}: make {target}"
        if command[0] in ("python", "python3") and command[1:2] and command[1].endswith(".py"):
            assert (ROOT / command[1]).is_file(), f"{line}: {command[1]}"


def test_every_option_the_readme_mentions_exists():
    known = {s for p in all_parsers() for a in p._actions for s in a.option_strings}
    for name, text in DOCS.items():
        prose = re.sub(r"```python\n.*?```", "", text, flags=re.S)
        mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", prose))
        unknown = sorted(mentioned - known - FOREIGN_OPTIONS)
        assert not unknown, f"options in {name} that no iipa command has: {unknown}"


def test_profiles_table_lists_every_profile():
    from iipa.profiles import list_profiles

    for name in list_profiles():
        assert f"| `{name}` |" in DOCS["docs/models.md"], f"profile {name} is missing from docs/models.md's table"


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
@pytest.mark.parametrize("line,code", fenced({"python"}), ids=[n for n, _ in fenced({"python"})])
def test_python_snippet_runs(line, code, snippet_dir):
    proc = subprocess.run([sys.executable, "-c", code], cwd=snippet_dir, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"snippet at {line} failed:\n{proc.stderr[-3000:]}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_every_relative_link_resolves():
    anchors = {name: {_anchor(h) for h in re.findall(r"^#+ (.*)$", text, re.M)} for name, text in DOCS.items()}
    for name, text in DOCS.items():
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (base / path).resolve() if path else (ROOT / name).resolve()
            assert file.exists(), f"{name}: link to {target}, no such file"
            rel = file.relative_to(ROOT).as_posix()
            if anchor and rel in anchors:
                assert anchor in anchors[rel], f"{name}: link to {target}, no such heading in {rel}"


def test_the_readme_is_a_short_front_page():
    readme = DOCS["README.md"].splitlines()
    assert len(readme) <= 500, f"README.md has {len(readme)} lines; move detail to docs/"
    head = "\n".join(readme[:40])
    assert "## Quick start" in head and "## Contents" in head
    first_150 = "\n".join(readme[:150])
    commands = {a.dest and sub for p in [build_parser()] for a in p._actions
                if isinstance(a, argparse._SubParsersAction) for sub in a.choices}
    missing = sorted(c for c in commands if not re.search(rf"^iipa {re.escape(c)}\b", first_150, re.M))
    assert not missing, f"commands without an example in the README's first 150 lines: {missing}"
    for name in DOCS:
        if name.startswith("docs/"):
            assert f"({name})" in DOCS["README.md"], f"README.md does not link {name}"
