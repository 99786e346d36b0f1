"""`iipa score --engine spark` against `iipa score`, in one run, on the same JPEGs:

    python benchmarks/spark_score.py                              # 2,000 JPEGs, 1 M-row table
    python benchmarks/spark_score.py --n 200 --table-rows 20000   # a quick check
    python benchmarks/spark_score.py --table-rows 0 --conf spark.driver.defaultJavaOptions=
                                        # without iipa's JVM options for local sessions

Throughput (img/s) on the same 1080-px JPEGs (``_photos.py``), each engine in a fresh process:
  iipa score     the local command (onnxruntime route); "steady" leaves out its start-up
                 (imports, the model), measured as a 16-image run's time
  local[1]       ``score_to_parquet`` on a ``local[1]`` session (one task, one thread)
  local[2]       the same on ``local[2]`` (two tasks)
Spark rows: the session's start-up (the JVM) is reported apart. "first" is the session's first
job, which also pays the one-off start of the Python workers, the JVM's warm-up (class loading,
code generation) and the first onnxruntime sessions; "steady" is the same job again in the same
session (listing, the count, the shuffles, one onnxruntime session per task, the Parquet write
and its read-back all included): the rate of a large input, where the one-off costs vanish.
The one-off cost (first minus steady, in seconds) is printed. Targets, steady against steady:
local[2] >= 0.8x iipa score, local[2] / local[1] >= 1.6.

Driver memory: ``local[2]`` over a Parquet table of ``--table-rows`` paths (all but a few
missing files, so it runs in a minute): the driver's Python peak RSS (VmHWM: this process
alone) plus the JVM's peak heap in use (sampled every 0.2 s) under a 512 MB cap
(``spark.driver.memory``; the smallest Spark accepts is 450 MB): finishing at all shows the
JVM fits in it. In local mode that JVM also runs the executors' side of the tasks, so this
over-states a cluster's driver. Target < 1 GB with 1 M rows.
The machine may be shared: quote the load average printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
MB = 1024 * 1024
DRIVER_HEAP = "512m"  # the memory run's JVM heap limit: the job must fit in it


def child(argv: list[str]) -> dict:
    """Run this script as ``--child ...`` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_spark(master: str, inputs: str, output: str, sample: bool) -> dict:
    """(in the child) start a session, score ``inputs`` into ``output``, report times and memory."""
    t0 = time.perf_counter()
    from iipa.spark import score_to_parquet
    from iipa.spark.session import get_session

    conf = {"spark.ui.showConsoleProgress": "false", **json.loads(os.environ.get("IIPA_BENCH_CONF", "{}"))}
    if sample:  # a bounded heap: "used" then cannot grow into garbage the JVM has not collected yet
        conf["spark.driver.memory"] = DRIVER_HEAP
    spark, _ = get_session(master, conf)
    started = time.perf_counter() - t0
    peak = {"heap": 0, "rss": 0}
    stop = threading.Event()

    def poll() -> None:
        runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
        while not stop.is_set():
            peak["heap"] = max(peak["heap"], runtime.totalMemory() - runtime.freeMemory())
            peak["rss"] = max(peak["rss"], _rss())
            stop.wait(0.2)

    sampler = threading.Thread(target=poll, daemon=True)
    if sample:
        sampler.start()
    seconds = []
    for _ in range(1 if sample else 2):  # cold (Python workers start), then warm
        t1 = time.perf_counter()
        summary = score_to_parquet([inputs], output, overwrite=True, spark=spark)
        seconds.append(time.perf_counter() - t1)
    stop.set()
    if sample:
        sampler.join()
    max_heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    spark.stop()
    return {"start_s": started, "score_s": seconds, "rows": summary.rows, "failed": summary.failed,
            "heap_peak_mb": peak["heap"] / MB, "heap_max_mb": max_heap / MB,
            "rss_peak_mb": max(peak["rss"], _rss("VmHWM")) / MB}


def _rss(field: str = "VmRSS") -> int:
    """This process's resident memory (VmRSS) or its peak (VmHWM). Not ru_maxrss: Linux
    carries that over exec, so a child would report the parent that forked it."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))


def local_seconds(paths: list[Path], out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "iipa", "score", *map(str, paths), "-o", str(out), "--device", "cpu"],
                   env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def write_photos(folder: Path, n: int) -> None:
    from _photos import jpeg_photos

    folder.mkdir()
    for i, data in enumerate(jpeg_photos(n)):
        (folder / f"img{i:05d}.jpg").write_bytes(data)


def write_table(path: Path, rows: int, folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = sorted(str(p) for p in folder.glob("*.jpg"))[:16]
    paths = [f"{folder}/missing/{i:08d}.jpg" for i in range(rows - len(real))] + real
    pq.write_table(pa.table({"path": paths}), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="JPEGs to score (default 2,000)")
    ap.add_argument("--table-rows", type=int, default=1_000_000, help="rows of the memory run's table (0: skip)")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Spark setting for every session (e.g. spark.driver.defaultJavaOptions= to measure "
                         "without iipa's local JVM options)")
    ap.add_argument("--child", nargs=4, metavar=("MASTER", "INPUT", "OUTPUT", "SAMPLE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        master, inputs, output, sample = args.child
        print(json.dumps(run_spark(master, inputs, output, sample == "1")))
        return
    from iipa.spark.session import parse_conf

    ENV["IIPA_BENCH_CONF"] = json.dumps(parse_conf(args.conf))
    with tempfile.TemporaryDirectory(prefix="iipa-spark-bench-") as tmp:
        tmp = Path(tmp)
        write_photos(tmp / "photos", args.n)
        print(f"{args.n} JPEGs of 1080x1080; load average before: {os.getloadavg()[0]:.1f}", flush=True)
        photos = sorted((tmp / "photos").glob("*.jpg"))
        whole = local_seconds([tmp / "photos"], tmp / "local.csv")
        few = local_seconds(photos[:16], tmp / "few.csv")  # start-up and 16 images
        runs = {m: child([m, str(tmp / "photos"), str(tmp / f"out-{m[6]}"), "0"]) for m in ("local[1]", "local[2]")}
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        first = {"iipa score": args.n / whole}
        steady = {"iipa score": (args.n - 16) / (whole - few)}
        oneoff = {"iipa score": whole - (args.n - 16) / steady["iipa score"]}
        print(f"{'engine':<12} {'first img/s':>12} {'steady img/s':>13} {'one-off, s':>11} {'session start, s':>17}")
        print(f"{'iipa score':<12} {first['iipa score']:12.1f} {steady['iipa score']:13.1f} "
              f"{oneoff['iipa score']:11.1f} {'-':>17}")
        for master, r in runs.items():
            assert r["rows"] == args.n and r["failed"] == 0, r
            first[master], steady[master] = (args.n / s for s in r["score_s"])
            oneoff[master] = r["score_s"][0] - r["score_s"][1]
            print(f"{master:<12} {first[master]:12.1f} {steady[master]:13.1f} {oneoff[master]:11.1f} "
                  f"{r['start_s']:17.1f}")
        for name, rates in (("steady", steady), ("first", first)):
            print(f"{name}: local[2] / iipa score = {rates['local[2]'] / rates['iipa score']:.2f}"
                  f"{' (target >= 0.8)' if name == 'steady' else ''}; local[2] / local[1] = "
                  f"{rates['local[2]'] / rates['local[1]']:.2f}{' (target >= 1.6)' if name == 'steady' else ''}")
        if args.table_rows:
            write_table(tmp / "table.parquet", args.table_rows, tmp / "photos")
            r = child(["local[2]", str(tmp / "table.parquet"), str(tmp / "out-table"), "1"])
            assert r["rows"] == args.table_rows, r
            print(f"driver with a {args.table_rows:,}-row table ({r['failed']:,} missing files, "
                  f"{r['score_s'][0]:.0f} s): Python RSS peak {r['rss_peak_mb']:.0f} MB + JVM heap used peak "
                  f"{r['heap_peak_mb']:.0f} MB (max heap {r['heap_max_mb']:.0f} MB) = "
                  f"{r['rss_peak_mb'] + r['heap_peak_mb']:.0f} MB (target < 1024)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
