"""Slow and hostile clients against a live server on 127.0.0.1.

``--scenario probes`` (default): N hostile clients hold connections open by trickling a
request head (half of them) or a request body (the other half) one byte every few seconds,
reconnecting as soon as they are dropped, while a probe asks for the liveness page every
half second on a fresh connection. Prints how many probes got 200, their latency, and how
the attackers fared. ``serve`` starts ``iipa serve`` (the package's default model) and
probes ``/healthz``; ``study`` starts ``iipa study serve`` on a small generated study and
probes ``/``.

    python benchmarks/slow_clients.py --server serve --clients 200 --seconds 30
    python benchmarks/slow_clients.py --server study --clients 200 --seconds 30

The other scenarios are in :mod:`slow_uploads` (uploads starving each other, the
pending-connection cap, forged X-Forwarded-For) and run from here:

    python benchmarks/slow_clients.py --scenario uploads --seconds 60
    python benchmarks/slow_clients.py --scenario reconnect
    python benchmarks/slow_clients.py --scenario spoof
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from study_load import make_study


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: str, folder: Path, extra: tuple[str, ...] = (), env: dict | None = None
          ) -> tuple[subprocess.Popen, str, str, bytes]:
    """The server process, its URL, the probed path and the attackers' body request head."""
    port = free_port()
    if server == "serve":
        cmd = [sys.executable, "-m", "iipa", "serve", "--port", str(port), "--log-level", "warning", *extra]
        probe = "/healthz"
        body_head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000000\r\n\r\n--b\r\n")
    else:
        db = make_study(folder, 20)
        cmd = [sys.executable, "-m", "iipa", "study", "serve", "--db", db, "--port", str(port),
               "--admin-token", "bench-token", *extra]
        probe = "/"
        body_head = (b"POST /api/participants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 60000\r\n\r\n{")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + probe, timeout=1).status_code == 200:
                return proc, url, probe, body_head
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


class Attack:
    def __init__(self, port: int, body_head: bytes, every_s: float) -> None:
        self.port, self.body_head, self.every_s = port, body_head, every_s
        self.connects = self.drops = self.refused = 0

    async def client(self, body: bool, stop: asyncio.Event) -> None:
        head = self.body_head if body else b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.1)
                continue
            self.connects += 1
            try:
                writer.write(head)
                while not stop.is_set():
                    try:
                        if await asyncio.wait_for(reader.read(4096), self.every_s) == b"":
                            break  # dropped by the server: reconnect at once
                    except asyncio.TimeoutError:
                        writer.write(b"a")  # one more byte of head or body
                        await writer.drain()
            except OSError:
                pass
            self.drops += not stop.is_set()
            writer.close()


async def probe_loop(url: str, seconds: float, every_s: float) -> list[tuple[object, float]]:
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=5) as c:  # a fresh connection each time
                r = await c.get(url)
                status: object = r.status_code if r.status_code == 200 else f"{r.status_code} {r.text[:80]}"
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        results.append((status, time.perf_counter() - t0))
        await asyncio.sleep(every_s)
    return results


async def attack(url: str, probe: str, body_head: bytes, clients: int, seconds: float, every_s: float) -> None:
    port = int(url.rsplit(":", 1)[1])
    att = Attack(port, body_head, every_s)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(att.client(i % 2 == 1, stop)) for i in range(clients)]
    await asyncio.sleep(2.0)  # let every attacker connect first
    results = await probe_loop(url + probe, seconds, 0.5)
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    ok = [t for s, t in results if s == 200]
    failures = sorted({str(s) for s, _ in results if s != 200})
    print(f"probes {len(results)}  200: {len(ok)}  other: {len(results) - len(ok)} {failures}")
    if ok:
        print(f"probe latency: median {statistics.median(ok) * 1000:.1f} ms, max {max(ok) * 1000:.1f} ms")
    print(f"attackers: {clients} ({clients // 2} trickling heads, {clients - clients // 2} bodies, a byte every "
          f"{every_s:g} s) for {seconds:g} s: {att.connects} connections, {att.drops} dropped by the server, "
          f"{att.refused} refused")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["probes", "uploads", "reconnect", "spoof"], default="probes")
    p.add_argument("--server", choices=["serve", "study"], default="serve")
    p.add_argument("--attacker-addresses", type=int, default=1,
                   help="--scenario uploads: loopback addresses the attackers spread over (default 1)")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--every", type=float, default=2.0, help="seconds between an attacker's bytes (default 2)")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # room for the attackers' sockets
    if args.scenario != "probes":
        import slow_uploads

        return slow_uploads.run(args.scenario, args.seconds, start, args.attacker_addresses)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, probe, body_head = start(args.server, Path(tmp))
        try:
            print(f"{args.server}: {url}{probe}")
            asyncio.run(attack(url, probe, body_head, args.clients, args.seconds, args.every))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
