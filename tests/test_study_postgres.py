"""The study on PostgreSQL (the issue's "any SQLAlchemy URL" for larger deployments).

`.ci/run` starts a local PostgreSQL and sets IIPA_TEST_POSTGRES_URL; elsewhere the test is
skipped unless that variable points at a database it may wipe. Under CI=true a missing
database fails the test instead of skipping it.
"""

import os
import threading

import pytest
from sqlalchemy import create_engine, func, select

from iipa.study import Store, create_study, service
from iipa.study.analysis import analyze
from iipa.study.storage import Answer, Base
from study_util import make_pairs


@pytest.fixture
def pg_url():
    url = os.environ.get("IIPA_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("IIPA_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL for this test)")
        pytest.skip("set IIPA_TEST_POSTGRES_URL to a throwaway PostgreSQL database to run this test")
    engine = create_engine(url)
    Base.metadata.drop_all(engine)  # a throwaway database: start from nothing
    engine.dispose()
    return url


def test_full_participant_flow_on_postgresql(tmp_path, pg_url):
    pairs, images = make_pairs(tmp_path)
    store = Store(pg_url, create=True)
    create_study(store, pairs, images, n=6, training=2, attention=1, seed=0)
    codes = [service.create_participant(store, consent=True, gender=g, age_band="20-29", instagram=i,
                                        social_over_3h=not i) for g, i in (("female", True), ("male", False))]
    for code in codes:
        item = service.next_item(store, code)
        while item["state"] == "training":
            item = service.submit_answer(store, code, item["pair_id"], "left", 50)["next"]
        # eight concurrent copies of the same answer: exactly one is stored
        results, barrier = [], threading.Barrier(8)

        def post(code: str, pair_id: int, barrier: threading.Barrier, results: list) -> None:
            barrier.wait()
            results.append(service.submit_answer(store, code, pair_id, "right", 70)["status"])

        threads = [threading.Thread(target=post, args=(code, item["pair_id"], barrier, results)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == ["duplicate"] * 7 + ["recorded"]
        item = service.next_item(store, code)
        while item["state"] != "done":
            item = service.submit_answer(store, code, item["pair_id"], "left", 40)["next"]
        assert service.review(store, code)["n"] == 7  # 6 trials + 1 attention check
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 2 * (2 + 6 + 1)
    results = analyze(store)
    assert results is not None
    store.dispose()
