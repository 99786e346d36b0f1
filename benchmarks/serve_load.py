"""Load test of `iipa serve` on 127.0.0.1: requests/s, images/s, p50/p99 latency, errors.

    python benchmarks/serve_load.py                         # ResNet-50, 1/4/16 clients, batching on and off
    python benchmarks/serve_load.py --clients 16 --requests 100 --modes on
    python benchmarks/serve_load.py --model run/best.pt --max-seconds 20
    python benchmarks/serve_load.py --worst-memory --clients 8 --max-seconds 60
    python benchmarks/serve_load.py --worst-memory many-parts --clients 16 --max-seconds 30
    python benchmarks/serve_load.py --worst-memory grey16-png --clients 2 --max-seconds 30

For each micro-batching mode a fresh server process is started (``iipa serve``), warmed up,
and driven by N client threads, each posting one 1080x1080 JPEG per request to /v1/score
and waiting for the answer (closed loop). A level stops after --requests requests or
--max-seconds, whichever comes first. The default model is a random-init ResNet-50 saved
in the authors' plain state-dict format (the released weights are not reachable here);
speed does not depend on the weights. Clients and server share this machine's cores.

``--worst-memory [rgba-png]``: one server with the default limits; N clients (default 8)
post, for --max-seconds, a request of 8 flat RGBA PNGs of 7000x7000 (49 MP each, about
735 MB each to decode at 15 bytes a pixel, 5.9 GB in all, under the request limit; a few
KB on the wire, so the byte limits do not help), plus one client posting 10 of them (over
the request limit: 413). ``grey16-png``: one flat 16-bit grey 7000x7000 PNG a request.
``many-parts`` (default 16 clients): 600 parts of 60 KB a request, each part small enough
to stay in RAM while parsed. The server's RSS is sampled from /proc every 0.1 s; the
peak, the RSS when idle afterwards and the answers by status are printed.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from _photos import jpeg_photos


def authors_format_resnet50(folder: Path) -> Path:
    import torch

    from iipa import PopularityNet

    torch.manual_seed(0)
    path = folder / "resnet50-random-authors-format.pth"
    torch.save(PopularityNet("resnet50").net.state_dict(), path)  # plain torchvision keys, fc: 2048 -> 1
    return path


def make_jpegs(n: int, size: int = 1080, seed: int = 0) -> list[bytes]:
    return jpeg_photos(n, size, seed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, batching: bool, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "iipa", "serve", "--model", model, "--port", str(port), "--log-level", "warning",
           "--batching" if batching else "--no-batching", "--max-batch-size", str(args.max_batch_size),
           "--max-wait-ms", str(args.max_wait_ms), "--precision", args.precision,
           "--optimize", args.optimize]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def run_level(url: str, images: list[bytes], clients: int, max_requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(max_requests))
    stop_at = time.perf_counter() + max_seconds

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.perf_counter() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                files = [("files", (f"img{i}.jpg", images[i % len(images)], "image/jpeg"))]
                t0 = time.perf_counter()
                try:
                    r = http.post(url + "/v1/score", files=files)
                    ok = r.status_code == 200 and r.json()["results"][0]["error"] is None
                    err = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    err = type(exc).__name__
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if err:
                        errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    n_ok = len(latencies) - len(errors)
    return {"clients": clients, "requests": len(latencies), "seconds": wall, "req_s": len(latencies) / wall,
            "img_s": n_ok / wall, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": len(errors)}


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    total = float(re.search(r"^iipa_batch_size_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(r"^iipa_batch_size_count (\S+)$", text, re.M).group(1))
    return count, total


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def flat_png(side: int, mode: str) -> bytes:
    """A flat image: tiny on the wire, ``side``² pixels decoded."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.new("I;16", (side, side), 40000) if mode == "I;16" else Image.new(mode, (side, side), (200, 120, 40, 128))
    img.save(buf, format="PNG")
    return buf.getvalue()


def workload(name: str, clients: int) -> tuple[str, list[list[tuple]]]:
    """(description, the multipart files each client posts in a loop)."""
    if name == "many-parts":
        part = bytes(range(256)) * 235  # 60 KB: below the 64 KiB spooling threshold, so kept in RAM
        files = [("files", (f"p{i}.bin", part, "application/octet-stream")) for i in range(600)]
        return f"{clients} clients x 600 parts of 60 KB", [files] * clients
    if name == "grey16-png":
        image = flat_png(7000, "I;16")
        files = [("files", ("grey16.png", image, "image/png"))]
        return f"7000x7000 16-bit grey PNG ({len(image)} bytes); {clients} clients x 1 image", [files] * clients
    image = flat_png(7000, "RGBA")
    many = [("files", (f"big{i}.png", image, "image/png")) for i in range(10)]
    return (f"7000x7000 RGBA PNG ({len(image)} bytes); {clients} clients x 8 images + 1 client x 10 images",
            [many[:8]] * clients + [many])


def worst_memory(model: str, name: str, clients: int, seconds: float, args: argparse.Namespace) -> None:
    proc, url = start_server(model, True, args)
    try:
        described, requests = workload(name, clients)
        samples, statuses = [], {}
        lock, stop_at = threading.Lock(), time.perf_counter() + seconds
        idle = rss_mb(proc.pid)

        def client(files: list[tuple]) -> None:
            with httpx.Client(timeout=120) as http:
                while time.perf_counter() < stop_at:
                    try:
                        r = http.post(url + "/v1/score", files=files)
                        key = f"{r.status_code} {r.json().get('error', '')}".strip()
                    except httpx.HTTPError as exc:
                        key = type(exc).__name__
                    with lock:
                        statuses[key] = statuses.get(key, 0) + 1

        threads = [threading.Thread(target=client, args=(files,)) for files in requests]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples.append(rss_mb(proc.pid))
            time.sleep(0.1)
        time.sleep(5)
        after = rss_mb(proc.pid)
        print(f"{described}, {seconds:g} s")
        print(f"server RSS: idle before {idle:.0f} MB, peak {max(samples):.0f} MB, "
              f"5 s after the burst {after:.0f} MB; answers by status: {statuses}")
    finally:
        proc.terminate()
        proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (default: random-init ResNet-50 in the authors' format)")
    p.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels (default: 1,4,16)")
    p.add_argument("--modes", default="on,off", help="micro-batching modes to test (default: on,off)")
    p.add_argument("--requests", type=int, default=200, help="requests per level at most (default: 200)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="seconds per level at most (default: 30)")
    p.add_argument("--warmup", type=int, default=8, help="requests before measuring (default: 8)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--optimize", default="none", choices=["none", "jit", "compile"])
    p.add_argument("--worst-memory", nargs="?", const="rgba-png", choices=["rgba-png", "grey16-png", "many-parts"],
                   help="measure server RSS under the worst allowed requests instead of speed: flat 7000² RGBA "
                        "PNGs (default), a 16-bit grey one, or 600 small parts a request")
    args = p.parse_args(argv)
    if args.worst_memory:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        with tempfile.TemporaryDirectory() as tmp:
            default_clients = 16 if args.worst_memory == "many-parts" else 8
            clients = int(args.clients.split(",")[-1]) if args.clients != "1,4,16" else default_clients
            worst_memory(args.model or str(authors_format_resnet50(Path(tmp))), args.worst_memory, clients,
                         args.max_seconds, args)
        print(f"load average {os.getloadavg()[0]:.1f} at end")
        return 0
    levels = [int(c) for c in args.clients.split(",")]
    images = make_jpegs(16)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(authors_format_resnet50(Path(tmp)))
        print(f"{'batching':>8} {'clients':>7} {'requests':>8} {'req/s':>7} {'img/s':>7} {'p50 s':>7} "
              f"{'p99 s':>7} {'errors':>6} {'mean batch':>10}")
        for mode in args.modes.split(","):
            proc, url = start_server(model, mode == "on", args)
            try:
                run_level(url, images, min(4, max(levels)), args.warmup, 120)
                for clients in levels:
                    before = batch_stats(url)
                    r = run_level(url, images, clients, args.requests, args.max_seconds)
                    after = batch_stats(url)
                    calls = after[0] - before[0]
                    mean_batch = (after[1] - before[1]) / calls if calls else float("nan")
                    print(f"{mode:>8} {clients:>7} {r['requests']:>8} {r['req_s']:>7.1f} {r['img_s']:>7.1f} "
                          f"{r['p50']:>7.3f} {r['p99']:>7.3f} {r['errors']:>6} {mean_batch:>10.1f}", flush=True)
            finally:
                proc.terminate()
                proc.wait(60)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
