"""Study storage and participant logic: sampling, idempotent answers, phases, sessions."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from iipa.errors import IIPAError
from iipa.study import Store, create_study, service
from iipa.study.plan import left_slot, trial_order
from iipa.study.storage import Answer, Pair, StudySession, record_answer
from study_util import make_pairs, make_study


def _new(store: Store, **kw) -> str:
    args = dict(consent=True, gender="female", age_band="20-29", instagram=True, social_over_3h=False) | kw
    return service.create_participant(store, **args)


def test_create_study_samples_test_split_and_sets_training_apart(tmp_path):
    store = Store(make_study(tmp_path, n=10, training=3, attention=4))
    with store.session() as s:
        pairs = list(s.scalars(select(Pair)))
    kinds = pd.Series([p.kind for p in pairs]).value_counts().to_dict()
    assert kinds == {"trial": 10, "training": 3, "attention": 4}
    real = [p for p in pairs if p.kind != "attention"]
    assert all(p.high_id.startswith("H") and p.low_id.startswith("L") for p in real)
    test_ids = {f"H{i:03d}x" for i in range(20)}  # make_pairs: the first 20 rows are test
    assert {p.high_id for p in real} <= test_ids
    assert len({p.high_id for p in real}) == 13  # training and trial pairs are disjoint
    assert 0 < sum(p.high_slot == "a" for p in pairs) < len(pairs)  # slots shuffled
    for p in pairs:  # attention checks: two real photos (with instructions written on them)
        if p.kind == "attention":
            assert p.a_path and p.b_path and p.a_id != p.b_id


def test_create_study_refuses_a_second_study_and_too_few_pairs(tmp_path):
    db = make_study(tmp_path)
    pairs, images = tmp_path / "pairs.csv", tmp_path / "images"
    with pytest.raises(IIPAError, match="already holds a study"):
        create_study(Store(db), pairs, images)
    with pytest.raises(IIPAError, match="need at least 31"):
        create_study(Store(str(tmp_path / "other.sqlite"), create=True), pairs, images, training=30)


def test_create_study_drops_pairs_with_missing_images(tmp_path):
    pairs, images = make_pairs(tmp_path, n_test=6)
    (images / "H000x.png").unlink()
    summary = create_study(Store(str(tmp_path / "s.sqlite"), create=True), pairs, images, n=100,
                           training=1, attention=0)
    assert summary.dropped_missing_images == 1 and summary.trials == 4


def test_missing_database_names_the_file(tmp_path):
    with pytest.raises(IIPAError, match="no such study database"):
        Store(str(tmp_path / "nope.sqlite"))


def test_record_answer_is_idempotent_and_keeps_the_first(tmp_path):
    store = Store(make_study(tmp_path))
    code = _new(store)
    with store.session() as s:
        pid = s.scalar(select(Pair.id).where(Pair.kind == "training"))
        part = service._participant(s, code)

    def answer(side):
        return Answer(participant_id=part.id, pair_id=pid, left_slot="a", chosen_side=side,
                      chosen_slot="a" if side == "left" else "b", correct=True, response_ms=5)

    with store.session() as s:
        first, created = record_answer(s, answer("left"))
        assert created
    with store.session() as s:
        again, created = record_answer(s, answer("right"))
        assert not created and again.id == first.id and again.chosen_side == "left"
        assert s.scalar(select(func.count()).select_from(Answer)) == 1


def test_concurrent_duplicate_posts_store_one_answer(tmp_path):
    store = Store(make_study(tmp_path))
    code = _new(store)
    pair_id = service.next_item(store, code)["pair_id"]
    results, barrier = [], threading.Barrier(8)

    def post():
        barrier.wait()
        results.append(service.submit_answer(store, code, pair_id, "left", 100)["status"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["duplicate"] * 7 + ["recorded"]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 1


def test_layout_and_order_follow_the_secret_per_participant():
    ids = list(range(1, 41))
    key, other = b"k" * 32, b"o" * 32
    assert trial_order(key, "AAA", ids) == trial_order(key, "AAA", ids)
    assert trial_order(key, "AAA", ids) != trial_order(key, "BBB", ids)
    assert trial_order(key, "AAA", ids) != trial_order(other, "AAA", ids)
    assert sorted(trial_order(key, "AAA", ids)) == ids
    sides = [left_slot(key, "AAA", i) for i in ids]
    assert sides == [left_slot(key, "AAA", i) for i in ids]
    assert 8 < sides.count("a") < 32
    assert sides != [left_slot(key, "BBB", i) for i in ids]
    assert sides != [left_slot(other, "AAA", i) for i in ids]


def test_phases_feedback_and_review(tmp_path):
    store = Store(make_study(tmp_path, n=3, training=2, attention=1))
    code = _new(store)
    item = service.next_item(store, code)
    assert item["state"] == "training" and item["index"] == 1
    with store.session() as s:
        trial_id = s.scalar(select(Pair.id).where(Pair.kind == "trial"))
    with pytest.raises(service.StudyError, match="not the pair shown to you now") as err:
        service.submit_answer(store, code, trial_id, "left", 10)
    assert err.value.status == 409
    seen = []
    while item["state"] != "done":
        with pytest.raises(service.StudyError) as err:
            service.review(store, code)  # not before the end
        assert err.value.status == 403
        reply = service.submit_answer(store, code, item["pair_id"], "left", 10)
        assert ("feedback" in reply) == (item["state"] == "training")
        if item["state"] == "training":
            assert reply["feedback"]["more_popular"] in ("left", "right")
        seen.append(item["pair_id"])
        item = reply["next"]
    assert len(seen) == len(set(seen)) == 6
    review = service.review(store, code)  # while open: the choices only, no score, no answers
    assert review["n"] == 4 and not review["closed"] and review["score_percent"] is None
    assert all(set(a) == {"pair_id", "left", "right", "your_choice"} for a in review["answers"])
    service.close_study(store)
    review = service.review(store, code)
    assert review["closed"] and {a["attention_check"] for a in review["answers"]} == {True, False}
    assert 0 <= review["score_percent"] <= 100
    for a in review["answers"]:
        assert a["correct"] == (a["your_choice"] == a["more_popular"])


def test_session_cap_gives_a_break_and_a_new_session_resumes(tmp_path):
    store = Store(make_study(tmp_path, n=3, training=1, attention=0, session_minutes=30))
    code = _new(store)
    first = service.next_item(store, code)
    with store.session() as s:  # pretend the session started 31 minutes ago
        for row in s.scalars(select(StudySession)):
            row.started_at -= timedelta(minutes=31)
        s.commit()
    assert service.next_item(store, code)["state"] == "break"
    # no answers during a break, not even to the pair on screen when time ran out
    with pytest.raises(service.StudyError, match="session has ended") as err:
        service.submit_answer(store, code, first["pair_id"], "right", 10)
    assert err.value.status == 409
    service.start_session(store, code.lower())  # codes are case-insensitive
    nxt = service.next_item(store, code)
    assert (nxt["state"], nxt["pair_id"]) == (first["state"], first["pair_id"])  # shown again
    assert service.submit_answer(store, code, first["pair_id"], "right", 10)["status"] == "recorded"
    with store.session() as s:
        sessions = list(s.scalars(select(StudySession)))
    assert len(sessions) == 2 and sessions[0].ended_at is not None and sessions[1].ended_at is None


@pytest.mark.parametrize("field,value,match", [
    ("consent", False, "consent"), ("gender", "robot", "gender"), ("age_band", "9", "age_band"),
    ("instagram", "maybe", "instagram")])
def test_bad_demographics_are_refused(tmp_path, field, value, match):
    store = Store(make_study(tmp_path))
    with pytest.raises(service.StudyError, match=match):
        _new(store, **{field: value})


def test_bad_answers_are_refused(tmp_path):
    store = Store(make_study(tmp_path))
    code = _new(store)
    pid = service.next_item(store, code)["pair_id"]
    for side, ms, match in (("up", 1, "side"), ("left", -1, "response_ms"), ("left", 1.5, "response_ms")):
        with pytest.raises(service.StudyError, match=match):
            service.submit_answer(store, code, pid, side, ms)
    with pytest.raises(service.StudyError, match="no such pair"):
        service.submit_answer(store, code, 9999, "left", 1)
    with pytest.raises(service.StudyError, match="unknown participant"):
        service.submit_answer(store, "NOPE", pid, "left", 1)


def test_any_sqlalchemy_url_and_sqlite_pragmas(tmp_path):
    from sqlalchemy import inspect, text

    path = tmp_path / "url.sqlite"
    store = Store(f"sqlite+pysqlite:///{path}", create=True)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert path.is_file()
    assert {"study", "pairs", "participants", "sessions", "answers"} <= set(inspect(store.engine).get_table_names())


def test_retried_sign_up_with_a_client_token_registers_once(tmp_path):
    store = Store(make_study(tmp_path))
    codes, barrier = [], threading.Barrier(6)

    def sign_up():
        barrier.wait()
        codes.append(_new(store, client_token="tok-0123456789"))

    threads = [threading.Thread(target=sign_up) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(codes) == 6 and len(set(codes)) == 1
    assert _new(store, client_token="tok-other-token") != codes[0]
    assert _new(store) != _new(store)  # without a token every call is a new participant
    from iipa.study.storage import Participant

    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 4
    with pytest.raises(service.StudyError, match="client_token"):
        _new(store, client_token="short")


def test_a_late_next_item_cannot_put_an_answered_pair_back_on_screen(tmp_path, monkeypatch):
    """The live test's 409 "not the pair shown to you now": a late copy of an answer ran
    next_item, read "pair 2 next", and wrote it only after the participant had answered pair
    2 and been shown pair 3, so their answer to pair 3 was refused. next_item now reads and
    writes in one writing transaction: the late copy finishes before anyone else moves on."""
    store = Store(make_study(tmp_path))
    code = _new(store)
    first = service.next_item(store, code)["pair_id"]
    with store.session() as s:  # pair 1 answered; the request's own next_item has not run yet
        p = s.scalar(select(service.Participant).where(service.Participant.code == code))
        session = s.scalar(select(StudySession).where(StudySession.participant_id == p.id))
        record_answer(s, Answer(participant_id=p.id, pair_id=first, session_id=session.id, left_slot="a",
                                chosen_side="left", chosen_slot="a", correct=True, response_ms=5))
    todo, reached, release = service._todo, threading.Event(), threading.Event()

    def slow_todo(*args):
        out = todo(*args)
        if threading.current_thread().name == "late":
            reached.set()
            release.wait(1.0)  # the late copy stalls between what it read and what it writes
        return out

    monkeypatch.setattr(service, "_todo", slow_todo)
    late = threading.Thread(target=service.next_item, args=(store, code), name="late")
    late.start()
    assert reached.wait(10)
    second = service.next_item(store, code)["pair_id"]
    assert second != first
    third = service.submit_answer(store, code, second, "left", 10)["next"]["pair_id"]
    release.set()
    late.join(10)
    assert service.submit_answer(store, code, third, "right", 10)["status"] == "recorded"


def test_store_sessions_see_one_snapshot_and_writers_hold_the_lock(tmp_path):
    db = make_study(tmp_path)
    store = Store(db)
    _new(store)
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    insert = "INSERT INTO sessions (participant_id, started_at) VALUES (1, '2026-01-01 00:00:00')"
    count = select(func.count()).select_from(StudySession)
    with store.session() as s:  # reading: what it read still holds at its end
        before = s.scalar(count)
        other.execute(insert)
        assert s.scalar(count) == before
    with store.session(write=True) as s:  # writing: nobody else writes until it ends
        s.scalar(count)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute(insert)
    other.execute(insert)
    other.close()
    with store.session() as s:
        assert s.scalar(count) == before + 2
