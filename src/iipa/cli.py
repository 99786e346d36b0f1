"""The ``iipa`` command. One sub-command per module in ``iipa.commands``; no logic here.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; ``add_arguments`` must not import torch, pandas or other heavy
modules (``iipa --help`` builds every parser), ``run`` imports what it needs.

The contract every command gets from here:
- exit 0 success, 1 some inputs failed (details on stderr), 2 usage or input error,
  130 interrupted (Ctrl-C); an error is one line on stderr, never a traceback
  (``IIPA_DEBUG=1`` prints it);
- no prefix matching of long options (``--out`` is never ``--output``); a usage error
  prints the usage of the sub-command it is about;
- the device and the model are checked before any work starts;
- a closed stdout (``iipa score ... | head -1``) ends the command quietly, exit 0;
- a command that fails leaves no empty output file or folder behind.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from iipa import __version__, commands
from iipa.commands._common import add_offline_argument, check_args
from iipa.errors import IIPAError, debug
from iipa.extras import explain_missing
from iipa.model.weights_store import OFFLINE_ENV, offline

# Arguments that name files or folders a command creates (removed again if left empty by a failure).
OUTPUT_ARGS = ("out", "output", "report", "histogram")


class Parser(argparse.ArgumentParser):
    """ArgumentParser without prefix matching that remembers which (sub-)parser parsed last,
    so that an unknown option is reported with the usage of its sub-command."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        # sub-parsers finish first and their namespace is copied into ours: keep the deepest
        if not isinstance(getattr(ns, "_parser", None), Parser):
            ns._parser = self
        return ns, extras


def build_parser() -> Parser:
    parser = Parser(prog="iipa",
                    description="Intrinsic image popularity assessment (Ding, Ma & Wang, ACM MM 2019).",
                    epilog="exit codes: 0 ok, 1 some inputs failed, 2 usage or input error, 130 interrupted; "
                           "IIPA_DEBUG=1 shows tracebacks")
    parser.add_argument("--version", action="version", version=f"iipa {__version__}")
    add_offline_argument(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"iipa.commands.{info.name}")
        # argparse %-formats help strings: a literal '%' ("95% CI") must be doubled
        cmd = sub.add_parser(module.NAME, help=module.HELP.replace("%", "%%"), description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("iipa: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "offline", False):
        os.environ[OFFLINE_ENV] = "1"
    if offline():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm/huggingface_hub: no network either
    created = _missing_outputs(args)
    try:
        check_args(args)
        code = int(run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at exit
        return code
    except BaseException as exc:
        for path in created:
            _remove_if_empty(path)
        if isinstance(exc, (KeyboardInterrupt, BrokenPipeError, SystemExit)):
            raise
        return _report(args.command, exc)


def _report(command: str, exc: BaseException) -> int:
    """One line on stderr and the exit code for an exception that ended a command."""
    if debug():
        traceback.print_exception(exc)
    if isinstance(exc, IIPAError):
        code, text = 2, str(exc)
    elif isinstance(exc, ModuleNotFoundError) and explain_missing(exc):
        code, text = 2, explain_missing(exc)
    elif isinstance(exc, (FileExistsError, NotADirectoryError)):  # e.g. --out names a file
        code, text = 2, (f"{exc.filename}: {exc.strerror}: an output folder cannot be created there "
                         "(is --out a file?)")
    elif isinstance(exc, OSError):  # a missing, unreadable or unwritable path: the user's to fix
        code, text = 2, str(exc)
    else:
        hint = "" if debug() else "; IIPA_DEBUG=1 shows the traceback"
        code, text = 1, f"unexpected {type(exc).__name__}: {exc}{hint}"
    lines = text.strip().splitlines() or [type(exc).__name__]
    more = " (…)" if len(lines) > 1 else ""
    print(f"iipa {command}: error: {lines[0]}{more}", file=sys.stderr)
    return code


def _stdout_closed() -> int:
    """The reader went away (`| head`): stop quietly. Point stdout at /dev/null so that the
    interpreter's final flush does not raise again (the recipe in Python's signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 0


def _missing_outputs(args: argparse.Namespace) -> list[Path]:
    """For each output argument, the topmost path that does not exist yet (what a run may create)."""
    created = []
    for name in OUTPUT_ARGS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or value in ("", "-"):
            continue
        path = Path(value).absolute()
        if path.exists():
            continue
        while not path.parent.exists():
            path = path.parent
        created.append(path)
    return created


def _remove_if_empty(path: Path) -> None:
    if path.is_file() and path.stat().st_size == 0:
        path.unlink()
    elif path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
