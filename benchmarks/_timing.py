"""Throughput measurements shared by the scoring benchmarks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from iipa import Scorer


def bare_rate(scorer: Scorer, batch: np.ndarray, seconds: float) -> float:
    """Images per second of the backend alone (``score_array``) on prepared uint8 N x S x S x 3 views."""
    scorer.score_array(batch)  # warm-up (oneDNN / onnxruntime kernel selection)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or n == 0:
        scorer.score_array(batch)
        n += len(batch)
    return n / (time.perf_counter() - t)


def end_to_end(scorer: Scorer, paths: list[Path]) -> tuple[float, np.ndarray]:
    """Images per second of ``iter_scores`` over files (decoding included), and the scores."""
    list(scorer.iter_scores(paths[: scorer.batch_size]))  # warm-up
    t = time.perf_counter()
    scores = np.array([r.score for r in scorer.iter_scores(paths)], dtype=np.float64)
    return len(paths) / (time.perf_counter() - t), scores


def decode_rate(scorer: Scorer, paths: list[Path], threads: int) -> float:
    """Images per second of the profile's preparation alone (decode + resize) on ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(scorer.prepare, paths))
    return len(paths) / (time.perf_counter() - t)
