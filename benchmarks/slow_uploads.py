"""Scenarios of ``slow_clients.py --scenario``: uploads starving each other, the
pending-connection cap, forged X-Forwarded-For. Attackers connect from 127.0.0.2 (the
forger of ``spoof`` from 127.0.0.1, the address uvicorn's defaults trusted) and a victim
from 127.0.0.3 (Linux routes all of 127/8 to loopback), legitimate clients from 127.0.0.1,
so per-address limits see them as the different clients they would be.

- ``uploads``: 250 slow multipart uploads (one byte every 2 s) and 40 slow heads, all
  reconnecting when dropped, for ``--seconds``; meanwhile a 5 KB JPEG and a 3 MB PNG are
  posted in turn every 2.5 s. Prints their statuses and latencies, and the attackers' answers.
- ``reconnect``: 600 clients each send one header line and reconnect as soon as they are
  dropped; a 3 MB PNG is uploaded at 1 MB/s, three times. Prints how many completed with 200.
- ``spoof``: 3,000 wrong API keys (half in a victim's name via X-Forwarded-For, half under
  random names), then the victim's right key; 40 study sign-ups and 60 wrong admin tokens
  under varied X-Forwarded-For, then the admin's right token from another address.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"
# The forger sends from 127.0.0.1: the address uvicorn's own defaults trust X-Forwarded-For from.
FORGER = "127.0.0.1"


def image(fmt: str, side: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)).save(buf, fmt, quality=90)
    return buf.getvalue()


def multipart(data: bytes, name: str) -> bytes:
    return (f'--bnd\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n--bnd--\r\n"


def status_of(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


class Trickle:
    """``n`` clients from ``source`` sending ``head`` then a byte every ``every_s``, reconnecting when dropped."""

    def __init__(self, port: int, head: bytes, n: int, every_s: float, sources: tuple[str, ...] = (ATTACKER,)) -> None:
        self.port, self.head, self.n, self.every_s, self.sources = port, head, n, every_s, sources
        self.connects, self.refused, self.answers = 0, 0, Counter()

    async def one(self, stop: asyncio.Event, source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.1)
                continue
            self.connects += 1
            answer = b""
            try:
                writer.write(self.head)
                while not stop.is_set():
                    try:
                        chunk = await asyncio.wait_for(reader.read(4096), self.every_s)
                    except asyncio.TimeoutError:
                        writer.write(b"a")
                        await writer.drain()
                        continue
                    answer += chunk
                    if not chunk:
                        break
            except OSError:
                pass
            if not stop.is_set():
                self.answers[status_of(answer)] += 1
            writer.close()

    def start(self, stop: asyncio.Event) -> list[asyncio.Task]:
        return [asyncio.create_task(self.one(stop, self.sources[i % len(self.sources)])) for i in range(self.n)]


async def post(url: str, body: bytes, name: str, *, source: str = "127.0.0.1", headers: dict | None = None,
               timeout: float = 30) -> tuple[str, float]:
    t0 = time.perf_counter()
    transport = httpx.AsyncHTTPTransport(local_address=source)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
            r = await c.post(url, files=[("files", (name, body, "application/octet-stream"))], headers=headers)
            status = str(r.status_code) if r.status_code == 200 else f"{r.status_code} {r.text[:100]}"
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - t0


def attacker_addresses(n: int) -> tuple[str, ...]:
    """``n`` loopback source addresses from 127.0.0.2 on (127.0.0.3, the victim's, skipped)."""
    hosts = (i for i in range(2, 65536 * 255) if i != 3)
    return tuple(f"127.{h // 65536 % 256}.{h // 256 % 256}.{h % 256}" for h, _ in zip(hosts, range(n)))


def _attack_process(port: int, seconds: float, addresses: int, out) -> None:
    """The attackers, in their own process: their event loop must not slow the legitimate client's."""
    body_head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 1000000\r\n\r\n--b\r\n")

    async def main() -> None:
        sources = attacker_addresses(addresses)
        bodies = Trickle(port, body_head, 250, 2.0, sources)
        heads = Trickle(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", 40, 2.0, sources)
        stop = asyncio.Event()
        tasks = bodies.start(stop) + heads.start(stop)
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=10)
        out.put([(name, att.connects, dict(att.answers), att.refused)
                 for name, att in (("slow bodies", bodies), ("slow heads", heads))])

    asyncio.run(main())


async def uploads(url: str, seconds: float, addresses: int) -> None:
    import multiprocessing

    port = int(url.rsplit(":", 1)[1])
    small, large = image("JPEG", 64, 1), image("PNG", 1000, 2)
    baseline = {label: await post(url + "/v1/score", data, name)
                for label, data, name in (("5 KB", small, "a.jpg"), ("3 MB", large, "b.png"))}
    out = multiprocessing.get_context("spawn").Queue()
    attackers = multiprocessing.get_context("spawn").Process(target=_attack_process, args=(port, seconds + 5, addresses, out))
    attackers.start()
    await asyncio.sleep(5.0)  # every attacker connected, the first bodies well under way
    results: dict[str, list[tuple[str, float]]] = {"5 KB": [], "3 MB": []}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        label, data, name = ("5 KB", small, "a.jpg") if i % 2 == 0 else ("3 MB", large, "b.png")
        results[label].append(await post(url + "/v1/score", data, name))
        i += 1
        await asyncio.sleep(1.0)
    stats = await asyncio.get_running_loop().run_in_executor(None, out.get, True, 60)
    attackers.join(30)
    print(f"legitimate uploads ({len(small)} and {len(large)} bytes) during {seconds:g} s of 250 slow bodies + "
          f"40 slow heads (one byte / 2 s, from {addresses} other address(es), reconnecting at once when dropped):")
    print("  without attackers: " + ", ".join(f"{k} {s} in {t:.2f} s" for k, (s, t) in baseline.items()))
    for label, rs in results.items():
        ok = [t for s, t in rs if s == "200"]
        other = Counter(s for s, _ in rs if s != "200")
        print(f"  {label}: {len(rs)} posted, 200: {len(ok)}, within 5 s: {sum(t <= 5 for t in ok)}, other: "
              f"{dict(other)}; latency median {statistics.median(ok) if ok else float('nan'):.2f} s, "
              f"max {max(ok) if ok else float('nan'):.2f} s")
    for name, connects, answers, refused in stats:
        print(f"  {name}: {connects} connections, answers when dropped {answers}, {refused} refused")


async def upload_at_rate(port: int, data: bytes, bytes_per_s: float) -> tuple[str, float]:
    body = multipart(data, "b.png")
    head = (f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=bnd\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    t0 = time.perf_counter()
    answer = b""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        step = 64 * 1024
        for i in range(0, len(body), step):
            writer.write(body[i:i + step])
            await writer.drain()
            await asyncio.sleep(step / bytes_per_s)
        answer = await asyncio.wait_for(reader.read(4096), 30)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return type(exc).__name__, time.perf_counter() - t0
    return status_of(answer), time.perf_counter() - t0


async def reconnect(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    heads = Trickle(port, b"GET / HTTP/1.1\r\n", 600, 30.0)  # one header line, then nothing
    stop = asyncio.Event()
    tasks = heads.start(stop)
    await asyncio.sleep(3.0)
    large = image("PNG", 1000, 2)
    results = [await upload_at_rate(port, large, 1_000_000) for _ in range(3)]
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    print(f"600 reconnecting one-header-line clients: {heads.connects} connections, answers {dict(heads.answers)}")
    print(f"  3 MB upload ({len(large)} bytes) at 1 MB/s: {sum(s == '200' for s, _ in results)} of 3 got 200: "
          + ", ".join(f"{s} in {t:.1f} s" for s, t in results))


async def _codes(n: int, make) -> Counter:
    codes: Counter = Counter()
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            try:
                codes[(await make(i)).status_code] += 1
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return codes


async def spoof_serve(url: str, key: str) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=FORGER)
    async with httpx.AsyncClient(transport=transport, timeout=10) as attacker:
        def guess(i: int):
            name = VICTIM if i % 2 else f"10.{i % 250}.{i // 250 % 250}.{random.randrange(250)}"
            return attacker.get(url + "/v1/model", headers={"X-API-Key": f"wrong-{i}", "X-Forwarded-For": name})

        t0 = time.perf_counter()
        codes = await _codes(3000, guess)
        took = time.perf_counter() - t0
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=VICTIM), timeout=10) as victim:
        right = await victim.get(url + "/v1/model", headers={"X-API-Key": key})
    print(f"3,000 wrong API keys from one address under forged X-Forwarded-For (half naming the victim) in "
          f"{took:.1f} s: {dict(codes)}; then the victim's right key from its own address: {right.status_code}")


async def spoof_study(url: str) -> None:
    demo = {"consent": True, "gender": "male", "age_band": "30-39", "instagram": False, "social_over_3h": True}
    transport = httpx.AsyncHTTPTransport(local_address=FORGER)
    async with httpx.AsyncClient(transport=transport, timeout=10) as attacker:
        signups = await _codes(40, lambda i: attacker.post(url + "/api/participants", json=demo,
                                                           headers={"X-Forwarded-For": f"10.1.{i}.{i}"}))
        tokens = await _codes(60, lambda i: attacker.get(url + "/admin", headers={
            "X-Admin-Token": f"wrong-{i}", "X-Forwarded-For": VICTIM if i % 2 else f"10.2.{i}.1"}))
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=VICTIM), timeout=10) as admin:
        right = await admin.get(url + "/admin/export/answers.csv", headers={"X-Admin-Token": "bench-token"})
    print(f"study: 40 sign-ups from one address under 40 forged X-Forwarded-For: {dict(signups)} (limit: 10 at once, "
          f"60 an hour); 60 wrong admin tokens: {dict(tokens)}; the admin's right token from its own address: "
          f"{right.status_code}")


def run(scenario: str, seconds: float, start, addresses: int = 1) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if scenario == "spoof":
            key = "bench-key-" + os.urandom(8).hex()
            env = {**os.environ, "IIPA_BENCH_KEY": key}
            servers = [("serve", ("--api-key-env", "IIPA_BENCH_KEY"), lambda url: spoof_serve(url, key)),
                       ("study", (), spoof_study)]
        else:
            env = None
            servers = [("serve", (), (lambda url: uploads(url, seconds, addresses)) if scenario == "uploads" else reconnect)]
        for server, extra, scenario_fn in servers:
            proc, url, _, _ = start(server, Path(tmp), extra, env)
            try:
                print(f"{server}: {url}")
                asyncio.run(scenario_fn(url))
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except Exception:  # noqa: BLE001 - a stuck server is killed
                    proc.kill()
    return 0
