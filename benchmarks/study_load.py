"""Load on the study server: N simulated participants answer in parallel against a live
``iipa study serve`` (SQLite, WAL, synchronous=FULL); prints answers/s and the latency of
the answer POST (which commits before replying with the next trial).

    python benchmarks/study_load.py --participants 30 --trials 20
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from PIL import Image


def make_study(folder: Path, trials: int) -> str:
    from iipa.study import Store, create_study

    rng = np.random.default_rng(0)
    (folder / "images").mkdir()
    rows = []
    for i in range(trials + 2):
        for pid in (f"H{i}", f"L{i}"):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "images" / f"{pid}.png")
        rows.append({"high_id": f"H{i}", "low_id": f"L{i}", "split": "test"})
    pd.DataFrame(rows).to_csv(folder / "pairs.csv", index=False)
    db = str(folder / "study.sqlite")
    create_study(Store(db, create=True), folder / "pairs.csv", folder / "images", n=trials, training=2,
                 attention=0)
    return db


def participant(base: str, latencies: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/api/participants", json={"consent": True, "gender": "female", "age_band": "20-29",
                                               "instagram": True, "social_over_3h": False}).json()
        code, item = r["code"], r["next"]
        while item["state"] in ("training", "trial"):
            t0 = time.perf_counter()
            item = c.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "left",
                                                          "response_ms": 500}).json()["next"]
            latencies.append(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=30)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = make_study(Path(tmp), args.trials)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "iipa", "study", "serve", "--db", db,
                                 "--port", str(port), "--admin-token", "bench",
                                 "--signups-per-hour", "1000000"])  # all sign-ups come from 127.0.0.1
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(base + "/api/meta", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            latencies: list[float] = []
            threads = [threading.Thread(target=participant, args=(base, latencies))
                       for _ in range(args.participants)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(10)
    ms = 1000 * np.array(latencies)
    print(f"{args.participants} participants x {args.trials + 2} answers = {len(ms)} answers in {wall:.1f} s: "
          f"{len(ms) / wall:.0f} answers/s; POST latency p50 {np.percentile(ms, 50):.0f} ms, "
          f"p95 {np.percentile(ms, 95):.0f} ms, max {ms.max():.0f} ms")


if __name__ == "__main__":
    main()
