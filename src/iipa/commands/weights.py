"""Named weights in the local cache: list them, download them ahead of time, print where they
live, and verify them.

The cache is $IIPA_HOME/weights (default ~/.cache/iipa/weights). A download is resumable
and written atomically; its SHA-256 is checked against the registry's when there is one,
and recorded in sha256.json beside the files on the first download either way, so
`verify` can tell a damaged or swapped file later. With IIPA_OFFLINE=1 (or `iipa
--offline`) nothing is downloaded, and a missing file is an error that says where to put it.

  list              name, architecture, profile, cached (or packaged: ships with iipa), checksum, path
  download [NAME…]  fetch into the cache (default: the default model; --all: every one)
  path [NAME]       the cached file's path (exit 1 if not downloaded yet); no NAME: the folder
  verify [NAME…]    recompute SHA-256 and compare (exit 1 on a mismatch or a missing file)

examples:
  iipa weights list
  iipa weights download authors-resnet50
  IIPA_OFFLINE=1 iipa score photos/ --model authors-resnet50
  iipa weights verify
"""

from __future__ import annotations

import argparse
import sys

from iipa.commands._common import DEFAULT_MODEL, add_offline_argument, add_table_output_arguments
from iipa.errors import IIPAError

NAME = "weights"
HELP = "named weights in the cache: list, download, path, verify (offline-friendly)"
COLUMNS = {"list": ("name", "arch", "profile", "cached", "sha256", "path"),
           "verify": ("name", "status", "sha256", "path")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="named weights and whether they are cached")
    add_table_output_arguments(ls)
    dl = sub.add_parser("download", help="download named weights into the cache")
    dl.add_argument("names", nargs="*", metavar="NAME", help=f"weights names (default: {DEFAULT_MODEL})")
    dl.add_argument("--all", action="store_true", help="every registered name")
    add_offline_argument(dl)
    pa = sub.add_parser("path", help="print the cached file's path (or the cache folder)")
    pa.add_argument("name", nargs="?", metavar="NAME", help="weights name (none: the cache folder)")
    ve = sub.add_parser("verify", help="check the cached files' SHA-256")
    ve.add_argument("names", nargs="*", metavar="NAME", help="weights names (default: every cached one)")
    add_table_output_arguments(ve)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "download": _download, "path": _path, "verify": _verify}[args.weights_command](args)


def _entries(names: list[str]):
    from iipa.model.weights import get_weights

    return [get_weights(n) for n in names]  # an unknown name: IIPAError listing the known ones


def _list(args: argparse.Namespace) -> int:
    from iipa.model.weights import list_weights, weights_path
    from iipa.model.weights_store import recorded_sha256

    rows = []
    for entry in _entries(list_weights()):
        path = weights_path(entry)
        rows.append({"name": entry.name, "arch": getattr(entry, "arch", ""), "profile": getattr(entry, "profile", ""),
                     "cached": "packaged" if entry.packaged else "yes" if path.is_file() else "no",
                     "sha256": entry.sha256 or recorded_sha256(path) or "", "path": str(path)})
    return _write(args, rows, COLUMNS["list"])


def _download(args: argparse.Namespace) -> int:
    from iipa.model.weights import list_weights, resolve_weights

    names = list_weights() if args.all else (args.names or [DEFAULT_MODEL])
    for entry in _entries(names):
        path = resolve_weights(entry.name)  # cached: returned at once; offline: WeightsError
        print(f"{entry.name}: {path}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from iipa.model.weights import iipa_home, weights_path

    if not args.name:
        print(iipa_home() / "weights")
        return 0
    path = weights_path(_entries([args.name])[0])
    print(path)
    if not path.is_file():
        print(f"iipa weights: {args.name} is not downloaded yet (iipa weights download {args.name})", file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from iipa.model.weights import file_sha256, list_weights, weights_path
    from iipa.model.weights_store import record_sha256, recorded_sha256

    entries = _entries(args.names or [n for n in list_weights()])
    rows = []
    for entry in entries:
        path = weights_path(entry)
        if not path.is_file():
            if args.names:  # asked for by name: a missing file is a failure; otherwise just listed
                rows.append({"name": entry.name, "status": "missing", "sha256": "", "path": str(path)})
            continue
        digest = file_sha256(path)
        expected = entry.sha256 or recorded_sha256(path)
        if expected is None and entry.packaged:
            status = "packaged"  # ships inside iipa: nothing is written into the installed package
        elif expected is None:
            record_sha256(path, digest)
            status = "recorded"  # nothing to compare with yet: trusted from now on
        else:
            status = "ok" if digest == expected.lower() else "MISMATCH"
        rows.append({"name": entry.name, "status": status, "sha256": digest, "path": str(path)})
    if not rows:
        raise IIPAError("no weights are cached yet; `iipa weights download NAME` fetches them")
    code = _write(args, rows, COLUMNS["verify"])
    bad = [r for r in rows if r["status"] in ("missing", "MISMATCH")]
    for r in bad:
        print(f"iipa weights: {r['name']}: {r['status']} ({r['path']})", file=sys.stderr)
    return 1 if bad else code


def _write(args: argparse.Namespace, rows: list[dict], columns: tuple[str, ...]) -> int:
    from iipa.output import infer_format, open_output, write_rows

    fmt = infer_format(args.output, args.format)
    with open_output(args.output) as fh:
        write_rows(rows, columns, fmt, fh)
    return 0
