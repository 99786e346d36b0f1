"""Wall time of `iipa --help` (and sub-command help) in fresh interpreters, and what it imports.

    python benchmarks/cli_help.py                 # `iipa --help`, `iipa score --help`, 15 runs each
    python benchmarks/cli_help.py --runs 31 --argv "train --help"

Each run is a new `python -m iipa ... --help` process with its output discarded: the time a
user waits, interpreter start-up included. Prints min / median / max wall seconds per command,
then `python -X importtime`'s top modules by cumulative import time for the first command
(the parser path should import no numpy, PIL, torch or http.client: tests/test_cli_contract.py
checks that; this script says how long what remains takes). On a loaded machine the median
moves with the load: compare with `python -c pass` (printed too), the floor of any command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def env() -> dict[str, str]:
    """This checkout's code, not an installed copy."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def wall_times(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), check=True)  # warm caches
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), check=True)
        times.append(time.perf_counter() - t)
    return times


def import_offenders(argv: list[str], top: int) -> list[tuple[float, float, str]]:
    """(cumulative ms, self ms, module) of the ``top`` slowest imports, nested ones included."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "iipa", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env(), check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative) / 1000, int(own) / 1000, name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument("--argv", action="append",
                        help='iipa arguments to time, repeatable (default: "--help" and "score --help")')
    parser.add_argument("--top", type=int, default=15, help="import-time offenders to list (default 15)")
    args = parser.parse_args(argv)
    commands = [shlex.split(a) for a in (args.argv or ["--help", "score --help"])]

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs each, wall seconds")
    print(f"{'command':<28} {'min':>6} {'median':>7} {'max':>6}")
    rows = [("python -c pass", [sys.executable, "-c", "pass"])]
    rows += [(f"iipa {' '.join(c)}", [sys.executable, "-m", "iipa", *c]) for c in commands]
    for label, cmd in rows:
        t = wall_times(cmd, args.runs)
        print(f"{label:<28} {min(t):6.3f} {statistics.median(t):7.3f} {max(t):6.3f}")

    print(f"\nslowest imports of `iipa {' '.join(commands[0])}` (python -X importtime, ms):")
    print(f"{'cumulative':>10} {'self':>7}  module")
    for cumulative, own, name in import_offenders(commands[0], args.top):
        print(f"{cumulative:10.1f} {own:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
