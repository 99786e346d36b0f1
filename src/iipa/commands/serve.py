"""Run the scoring service and its web page (FastAPI + uvicorn).

On SIGINT/SIGTERM the server stops accepting connections, finishes the requests in
flight (up to --graceful-timeout seconds), then stops the model worker.

The model is loaded as `iipa score` loads it (--model, --runtime, --crops, ...): the
default model runs on onnxruntime without PyTorch; heatmaps (/v1/explain, the page's box)
load its PyTorch weights on first use, when PyTorch is installed.

examples:
  iipa serve
  iipa serve --model run/best.pt --host 0.0.0.0 --port 8080 --api-key-env IIPA_API_KEY
  iipa serve --model run/best.pt --no-batching --max-concurrency 4
"""

from __future__ import annotations

import argparse
import os

from iipa.commands._common import (
    add_crops_argument,
    add_model_arguments,
    nonnegative_int,
    port_number,
    positive_float,
    positive_int,
    say_listening,
)
from iipa.errors import IIPAError
from iipa.extras import require

NAME = "serve"
HELP = "HTTP scoring service with a web page (POST /v1/score, /v1/compare, /v1/explain)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from iipa.clientlimits import FORWARDED_ALLOW_IPS_HELP
    from iipa.serve.settings import DEFAULT_FORMATS, ServeSettings

    d = ServeSettings()
    add_crops_argument(add_model_arguments(parser))
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, local only)")
    g.add_argument("--port", type=port_number, default=8000, help="port (default: 8000; 0 picks a free one)")
    g.add_argument("--graceful-timeout", type=float, default=None,
                   help="seconds to let in-flight requests finish on shutdown (default: the request timeout + 5)")
    g.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    g.add_argument("--api-key-env", metavar="VAR",
                   help="require header X-API-Key equal to this environment variable's value")
    g.add_argument("--forwarded-allow-ips", metavar="IPS", default=None, help=FORWARDED_ALLOW_IPS_HELP)
    lim = parser.add_argument_group("limits")
    lim.add_argument("--max-upload-mb", type=positive_float, default=d.max_upload_bytes / 2**20,
                     help=f"largest image file in MiB (default: {d.max_upload_bytes / 2**20:g})")
    lim.add_argument("--max-files", type=positive_int, default=d.max_files, help=f"files per request (default: {d.max_files})")
    lim.add_argument("--max-pixels", type=positive_int, default=d.max_pixels,
                     help=f"largest image in pixels, checked before decoding (default: {d.max_pixels}, as for "
                          "`iipa score`; memory is bounded by the decode budget whatever the limit)")
    lim.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                     help=f"allowed image formats, comma-separated (default: {','.join(DEFAULT_FORMATS)}; "
                          "phones' MPO counts as JPEG)")
    lim.add_argument("--timeout", type=positive_float, default=d.request_timeout_s,
                     help=f"seconds before a request is answered 503 (default: {d.request_timeout_s:g})")
    lim.add_argument("--max-concurrency", type=positive_int, default=d.max_concurrency,
                     help=f"requests processed at once (default: {d.max_concurrency})")
    lim.add_argument("--max-queue", type=nonnegative_int, default=d.max_queue,
                     help=f"requests allowed to wait beyond that before 503 (default: {d.max_queue})")
    lim.add_argument("--min-body-rate", type=float, default=d.min_body_rate,
                     help=f"bytes a second a request body must keep arriving at, over each 10 s spent waiting "
                          f"for it, else 408 (default: {d.min_body_rate:g}; 0: off)")
    lim.add_argument("--max-uploads-per-address", type=positive_int, default=d.max_uploads_per_address,
                     help="uploads one client address may be sending at once, else 429 "
                          f"(default: {d.max_uploads_per_address})")
    lim.add_argument("--upload-disk-mb", type=positive_float, default=d.upload_disk_bytes / 2**20,
                     help="MiB of upload bodies in flight, spooled to the temporary folder, else 503 "
                          f"(default: {d.upload_disk_bytes / 2**20:g})")
    b = parser.add_argument_group("micro-batching")
    b.add_argument("--batching", action=argparse.BooleanOptionalAction, default=d.batching,
                   help="gather images from concurrent requests into one model call (default: on)")
    b.add_argument("--max-batch-size", type=positive_int, default=d.max_batch_size,
                   help=f"images per model call (default: {d.max_batch_size})")
    b.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a batch waits for more requests (default: {d.max_wait_ms:g})")


def settings_from_args(args: argparse.Namespace):
    from iipa.serve.settings import ServeSettings

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise IIPAError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
    try:
        return ServeSettings(
            max_upload_bytes=int(args.max_upload_mb * 2**20), max_files=args.max_files, max_pixels=args.max_pixels,
            allowed_formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
            request_timeout_s=args.timeout, max_concurrency=args.max_concurrency, max_queue=args.max_queue,
            batching=args.batching, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
            min_body_rate=args.min_body_rate, max_uploads_per_address=args.max_uploads_per_address,
            upload_disk_bytes=int(args.upload_disk_mb * 2**20), api_key=api_key,
        )
    except ValueError as exc:
        raise IIPAError(f"iipa serve: {exc}") from None


def run(args: argparse.Namespace) -> int:
    require("serve", "iipa serve")
    from iipa.httpserver import listen, run_server, server_config
    from iipa.serve.app import create_app

    settings = settings_from_args(args)
    sock = listen(args.host, args.port)  # a port in use fails here, before the model loads
    try:
        app = create_app(args.model, settings, device=args.device, precision=args.precision, optimize=args.optimize,
                         runtime=args.runtime, crops=args.crops)
        say_listening(NAME, sock, f"API key required (header X-API-Key, from ${args.api_key_env})" if settings.api_key
                      else "no API key required (anyone who can reach this address may use it)")
        grace = args.graceful_timeout if args.graceful_timeout is not None else settings.request_timeout_s + 5
        config = server_config(app, host=args.host, port=args.port, header_timeout_s=settings.header_timeout_s,
                               body_timeout_s=settings.body_timeout_s, min_body_rate=settings.min_body_rate,
                               forwarded_allow_ips=args.forwarded_allow_ips, log_level=args.log_level,
                               timeout_graceful_shutdown=grace,
                               # admitted requests beyond this get 503 (connections still sending
                               # their head or body do not count: httpserver.py)
                               max_requests=2 * (settings.max_concurrency + settings.max_queue),
                               access_log=args.log_level == "debug")
        run_server(config, sock)
    finally:
        sock.close()
    return 0
