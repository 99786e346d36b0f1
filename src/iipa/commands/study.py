"""Run the paper's 2AFC psychophysical study: create it, serve it, export and analyse it.

examples:
  iipa study init --pairs pairs.parquet --images images/ --n 1000 --training 8 --db study.sqlite
  iipa study serve --db study.sqlite --port 8000 --admin-token s3cret
  iipa study close --db study.sqlite
  iipa study export --db study.sqlite --table answers --output answers.csv
  iipa study analyze --db study.sqlite --model run/best.pt --out study_report/

--db takes a SQLite file path or any SQLAlchemy URL (e.g. postgresql+psycopg://host/db).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from iipa.commands._common import (
    add_model_arguments,
    nonnegative_int,
    port_number,
    positive_float,
    positive_int,
    say_listening,
    unit_fraction,
)
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "study"
HELP = "2AFC human study: init, serve, close, export, analyze"
TOKEN_ENV = "IIPA_STUDY_ADMIN_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from iipa.clientlimits import FORWARDED_ALLOW_IPS_HELP

    sub = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="sample pairs from the test split into a new study database")
    init.add_argument("--pairs", required=True, help="pairs table (parquet/csv); the test split is used")
    init.add_argument("--images", required=True, help="id-named image folder (<post_id>.<ext>)")
    init.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL (must hold no study yet)")
    init.add_argument("--n", type=positive_int, default=1000, help="trial pairs (default: 1000, as in the paper)")
    init.add_argument("--training", type=nonnegative_int, default=8, help="training pairs shown with feedback (default: 8)")
    init.add_argument("--attention", type=nonnegative_int, default=10,
                      help="attention-check pairs: two photos, each with a written instruction, "
                           "'pick this image' or 'skip this image' (default: 10)")
    init.add_argument("--attention-pass", type=unit_fraction, default=0.8,
                      help="participants below this attention-check accuracy are excluded (default: 0.8)")
    init.add_argument("--session-minutes", type=positive_float, default=30.0, help="session cap (default: 30)")
    init.add_argument("--seed", type=int, default=0,
                      help="which pairs are sampled (the answer key, placements and order come from a "
                           "secret stored in the database, never from the seed)")

    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default: 8000)")
    serve.add_argument("--admin-token", default=None,
                       help=f"token for /admin and exports (default: ${TOKEN_ENV}, else a random one printed at start)")
    serve.add_argument("--forwarded-allow-ips", metavar="IPS", default=None, help=FORWARDED_ALLOW_IPS_HELP)
    serve.add_argument("--signups-per-hour", type=positive_float, default=60.0,
                       help="new participants per client address and hour, a sixth of them at once "
                            "(default: 60; raise it for a lab behind one address)")

    close = sub.add_parser("close", help="close the study: no more answers; reviews then show scores and answers")
    close.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL")

    exp = sub.add_parser("export", help="write answers, participants or pairs as CSV or JSON")
    exp.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL")
    exp.add_argument("--table", choices=["answers", "participants", "pairs"], default="answers")
    exp.add_argument("--format", "-f", choices=["csv", "json"], default=None,
                     help="default: from --output's extension, else csv")
    exp.add_argument("--output", "-o", help="file to write (default: stdout)")

    ana = sub.add_parser("analyze", help="Table 4, model comparison, Fig. 9 categories, Bradley-Terry scale")
    ana.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL")
    ana.add_argument("--out", required=True, metavar="DIR", help="output folder (report.md, report.html, results.json, plots)")
    ana.add_argument("--examples", type=nonnegative_int, default=4, help="example pairs per Fig. 9 category (default: 4)")
    add_model_arguments(ana, default=None)


def run(args: argparse.Namespace) -> int:
    require("study", "iipa study")
    return {"init": _init, "serve": _serve, "close": _close, "export": _export,
            "analyze": _analyze}[args.study_command](args)


def _init(args: argparse.Namespace) -> int:
    from iipa.study import Store, create_study

    if args.n < 1 or args.training < 0 or args.attention < 0:
        raise IIPAError("--n must be >= 1, --training and --attention >= 0")
    summary = create_study(Store(args.db, create=True), args.pairs, args.images, n=args.n,
                           training=args.training, attention=args.attention, seed=args.seed,
                           session_minutes=args.session_minutes, attention_pass=args.attention_pass)
    print(f"study created in {args.db}: {summary.training} training, {summary.trials} trial and "
          f"{summary.attention} attention-check pairs")
    if summary.dropped_unreadable_images:
        print(f"  {summary.dropped_unreadable_images} test pairs skipped: unreadable image, e.g. "
              + "; ".join(summary.unreadable[:3]), file=sys.stderr)
    if summary.dropped_missing_images:
        print(f"  {summary.dropped_missing_images} test pairs skipped: image missing in {args.images}", file=sys.stderr)
    if summary.trials < args.n:
        print(f"  only {summary.available} test pairs with images: using {summary.trials} trials, not {args.n}",
              file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from iipa.httpserver import listen, run_server, server_config
    from iipa.study import Store
    from iipa.study.app import create_app

    token = args.admin_token or os.environ.get(TOKEN_ENV)
    generated = not token
    if generated:
        token = secrets.token_urlsafe(16)
    # fails now, not on the first request, if the database holds no study or one that cannot be served
    app = create_app(Store(args.db), admin_token=token, signups_per_hour=args.signups_per_hour)
    sock = listen(args.host, args.port)
    url = say_listening("study serve", sock, "participants need no key; the admin pages (admin?token=...) need the "
                        "admin token" + (" printed below" if generated else f" (--admin-token or ${TOKEN_ENV})"))
    if generated:
        print(f"admin token: {token}  (pages: {url}admin?token=...)", file=sys.stderr)
    try:
        run_server(server_config(app, host=args.host, port=args.port, body_timeout_s=30.0, log_level="warning",
                                 forwarded_allow_ips=args.forwarded_allow_ips), sock)
    finally:
        sock.close()
    return 0


def _close(args: argparse.Namespace) -> int:
    from iipa.study import Store
    from iipa.study.service import close_study

    closed_at = close_study(Store(args.db))
    print(f"study in {args.db} closed at {closed_at.isoformat()} UTC: no more answers; reviews show scores and answers")
    return 0


def _export(args: argparse.Namespace) -> int:
    from iipa.output import open_output
    from iipa.study import Store
    from iipa.study.exports import answers_frame, pairs_frame, participants_frame, write_frame

    fmt = args.format or ("json" if (args.output or "").lower().endswith(".json") else "csv")
    frame = {"answers": answers_frame, "participants": participants_frame, "pairs": pairs_frame}[args.table]
    df = frame(Store(args.db))
    with open_output(args.output) as fh:
        write_frame(df, fmt, fh)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from iipa.study import Store
    from iipa.study.analysis import analyze
    from iipa.study.report import write_report

    kwargs = {"device": args.device, "precision": args.precision, "runtime": args.runtime,
              "optimize": args.optimize} if args.model else {}
    res = analyze(Store(args.db), model=args.model, examples=args.examples, **kwargs)
    if not len(res.per_participant):
        raise IIPAError(f"{args.db}: no trial answers from included participants yet")
    files = write_report(res, args.out)
    s = res.summary()
    std = "—" if s["single_std"] is None else f"{s['single_std']:.1f}"
    model = "—" if s["model"] is None else f"{100 * s['model']:.1f}%"
    print(f"majority {s['majority']:.1f}%  single {s['single_mean']:.1f}% ± {std}  model {model}  "
          f"({s['participants']} participants, {len(s['excluded'])} excluded, {s['pairs']} pairs)")
    print(f"report: {files['html']}")
    return 0
