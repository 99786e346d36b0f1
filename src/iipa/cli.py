"""The ``iipa`` command. One sub-command per module in ``iipa.commands``; no logic here.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Exit codes: 0 success, 1 some inputs failed (details on stderr),
2 usage errors and other user-facing errors.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from iipa import __version__, commands
from iipa.errors import IIPAError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iipa", description="Intrinsic image popularity assessment (Ding, Ma & Wang, ACM MM 2019).")
    parser.add_argument("--version", action="version", version=f"iipa {__version__}")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except IIPAError as exc:
        print(f"iipa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError) as exc:  # e.g. --out names a file
        print(f"iipa {args.command}: error: {exc.filename}: {exc.strerror}: an output folder "
              "cannot be created there (is --out a file?)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
