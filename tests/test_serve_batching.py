"""The micro-batcher: concurrent requests share model calls, results go back to their owner."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from iipa.serve.batching import MicroBatcher


class RecordingScorer:
    """Scores an image as the sum of its pixels; records each call's batch size and thread."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.delay = delay

    def score_views(self, views: list[np.ndarray]) -> list[float]:
        self.calls.append(sum(len(v) for v in views))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return [float(v.sum(dtype=np.float64)) / len(v) for v in views]


def images(n: int, offset: int = 0, views: int = 1) -> list[np.ndarray]:
    """``n`` images of ``views`` uint8 2 x 2 x 3 views each (as Profile.image_views gives)."""
    return [np.full((views, 2, 2, 3), i + offset, dtype=np.uint8) for i in range(n)]


async def submit_all(batcher: MicroBatcher, jobs: list[list[np.ndarray]]) -> list[list[float]]:
    return await asyncio.gather(*(batcher.score(j) for j in jobs))


def run(batcher: MicroBatcher, jobs):
    batcher.start()
    try:
        return asyncio.run(submit_all(batcher, jobs))
    finally:
        batcher.stop()


@pytest.mark.parametrize("enabled", [True, False])
def test_every_request_gets_its_own_scores(enabled):
    scorer = RecordingScorer()
    jobs = [images(k, offset=10 * k) for k in (1, 3, 2, 1, 4)]
    out = run(MicroBatcher(scorer, enabled=enabled, max_batch_size=8, max_wait_ms=100), jobs)
    assert out == [[float(t.sum()) for t in job] for job in jobs]
    assert sum(scorer.calls) == 11
    assert scorer.threads == {"iipa-model"}


def test_concurrent_requests_are_gathered_into_few_model_calls():
    scorer = RecordingScorer()
    run(MicroBatcher(scorer, enabled=True, max_batch_size=16, max_wait_ms=200), [images(1, i) for i in range(12)])
    assert len(scorer.calls) <= 2 and max(scorer.calls) >= 6, scorer.calls


def test_batching_off_runs_one_request_per_model_call():
    scorer = RecordingScorer()
    run(MicroBatcher(scorer, enabled=False), [images(1, i) for i in range(6)] + [images(3)])
    assert sorted(scorer.calls) == [1, 1, 1, 1, 1, 1, 3]


def test_batch_size_is_bounded():
    scorer = RecordingScorer()
    run(MicroBatcher(scorer, enabled=True, max_batch_size=4, max_wait_ms=100), [images(1, i) for i in range(10)])
    assert max(scorer.calls) <= 4 and sum(scorer.calls) == 10


def test_model_errors_reach_every_waiting_request():
    class Broken(RecordingScorer):
        def score_views(self, views):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        run(MicroBatcher(Broken(), max_wait_ms=50), [images(1), images(2)])


def test_calls_run_on_the_model_thread_and_stop_drains_the_queue():
    scorer = RecordingScorer(delay=0.05)
    batcher = MicroBatcher(scorer, enabled=True, max_batch_size=2, max_wait_ms=1)

    async def main():
        scores = [asyncio.ensure_future(batcher.score(images(1, i))) for i in range(5)]
        name = await batcher.run(lambda: threading.current_thread().name)
        return name, await asyncio.gather(*scores)

    batcher.start()
    name, scores = asyncio.run(main())
    batcher.stop()
    assert name == "iipa-model"
    assert [s[0] for s in scores] == [float(t.sum()) for i in range(5) for t in images(1, i)]
    assert not batcher.running


def test_cancelled_requests_are_not_scored():
    scorer = RecordingScorer(delay=0.3)
    batcher = MicroBatcher(scorer, enabled=False)

    async def main():
        first = asyncio.ensure_future(batcher.score(images(1)))
        await asyncio.sleep(0.05)  # the worker is now busy with ``first``
        second = asyncio.ensure_future(batcher.score(images(2)))
        await asyncio.sleep(0.01)
        second.cancel()
        return await first

    batcher.start()
    asyncio.run(main())
    batcher.stop()
    assert scorer.calls == [1]
