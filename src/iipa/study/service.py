"""What a participant can do, as plain functions over a :class:`Store` (the web app is a
thin layer over these).

Phases: training pairs (with feedback) -> trial and attention pairs in the participant's
order (no feedback; attention pairs look like any other trial) -> done (review). A session
lasts at most ``study.session_minutes``; then the participant sees a break screen and
starts a new session when ready, possibly days later with their code.

While the study is open nothing a participant can observe depends on the answer key of a
trial or attention pair (:func:`review` states the argument): feedback is given on training
pairs only, and the review shows a participant's own choices, with no score; ``close_study``
opens the full review, score included. An answer is accepted only for the pair the server
last handed to that participant in the current session, and its response time is measured
by the server from that moment.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iipa.errors import IIPAError
from iipa.study.plan import left_slot, trial_order
from iipa.study.storage import (
    AGE_BANDS,
    GENDERS,
    MAX_ID,
    Answer,
    Pair,
    Participant,
    Stimulus,
    Store,
    Study,
    StudySession,
    record_answer,
    utcnow,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed by hand
CODE_LENGTH = 10
MAX_RESPONSE_MS = 3_600_000


class StudyError(IIPAError):
    """A request the study cannot honour; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def check_servable(store: Store) -> None:
    """Refuse a study whose answer key follows from its seed (made before the secret existed)."""
    with store.session() as s:
        if store.study(s).secret is None:
            raise IIPAError(
                f"{store.engine.url}: this study was made by an older iipa whose answer key and "
                "left/right placements follow from --seed, so participants could predict them; it "
                "cannot be served. Export and analyse it as it is, and run new sessions on a study "
                "made by `iipa study init`")


def _open_study(store: Store, s: Session) -> Study:
    study = store.study(s)
    if study.closed_at is not None:
        raise StudyError("the study is closed", 409)
    return study


def close_study(store: Store) -> datetime:
    """Close the study: no more sign-ups or answers; every review then shows the answers."""
    with store.session(write=True) as s:
        study = store.study(s)
        if study.closed_at is None:
            study.closed_at = utcnow()
            for open_session in s.scalars(select(StudySession).where(StudySession.ended_at.is_(None))):
                open_session.ended_at = study.closed_at
            s.commit()
        return study.closed_at


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _participant(s: Session, code: str, *, lock: bool = False) -> Participant:
    """The participant with ``code``; ``lock`` holds their row until the transaction ends
    (``FOR UPDATE``: one writing request per participant at a time on databases with row
    locks; SQLite has none, and a writing session holds its database lock instead)."""
    query = select(Participant).where(Participant.code == normalise_code(code))
    p = s.scalar(query.with_for_update() if lock else query)
    if p is None:
        raise StudyError("unknown participant code", 404)
    return p


def _parse_yes_no(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false"):
        return value.lower() in ("yes", "true")
    raise StudyError(f"{field}: expected yes or no, got {value!r}", 422)


def create_participant(store: Store, *, consent: bool, gender: str, age_band: str,
                       instagram: Any, social_over_3h: Any, client_token: str | None = None,
                       admit: Callable[[], None] | None = None) -> str:
    """Register a consenting participant; returns their code.

    With ``client_token`` the call is idempotent: the same token returns the same code.
    ``admit`` is called before a new participant is made (the app's rate limit raises there).
    """
    if consent is not True:
        raise StudyError("consent: the participant must agree before taking part", 422)
    if gender not in GENDERS:
        raise StudyError(f"gender: expected one of {', '.join(GENDERS)}, got {gender!r}", 422)
    if age_band not in AGE_BANDS:
        raise StudyError(f"age_band: expected one of {', '.join(AGE_BANDS)}, got {age_band!r}", 422)
    row = dict(gender=gender, age_band=age_band, instagram=_parse_yes_no(instagram, "instagram"),
               social_over_3h=_parse_yes_no(social_over_3h, "social_over_3h"))
    if client_token is not None and not 8 <= len(client_token) <= 64:
        raise StudyError("client_token: expected 8 to 64 characters", 422)
    with store.session(write=True) as s:
        _open_study(store, s)
        if client_token is not None:
            known = s.scalar(select(Participant.code).where(Participant.client_token == client_token))
            if known is not None:
                return known
        if admit is not None:
            admit()
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        p = Participant(code=code, client_token=client_token, **row)
        s.add(p)
        try:
            s.flush()
            s.add(StudySession(participant_id=p.id))
            s.commit()
        except IntegrityError:  # a concurrent copy of this request won the race
            s.rollback()
            known = s.scalar(select(Participant.code).where(Participant.client_token == client_token))
            if client_token is None or known is None:
                raise
            return known
    return code


def start_session(store: Store, code: str) -> int:
    """End any open session and start a new one (after a break, or on coming back)."""
    with store.session(write=True) as s:
        p = _participant(s, code, lock=True)
        now = utcnow()
        for open_session in s.scalars(select(StudySession).where(
                StudySession.participant_id == p.id, StudySession.ended_at.is_(None))):
            open_session.ended_at = now
        new = StudySession(participant_id=p.id, started_at=now)
        s.add(new)
        s.commit()
        return new.id


def _current_session(s: Session, p: Participant, minutes: float) -> StudySession | None:
    """The open session, or None when it ended or ran past the cap (it is then closed)."""
    latest = s.scalar(select(StudySession).where(StudySession.participant_id == p.id)
                      .order_by(StudySession.id.desc()).limit(1))
    if latest is None or latest.ended_at is not None:
        return None
    if utcnow() - latest.started_at > timedelta(minutes=minutes):
        latest.ended_at = latest.started_at + timedelta(minutes=minutes)
        s.commit()
        return None
    return latest


def _image_urls(code: str, pair_id: int) -> dict[str, str]:
    # Only what the participant already sees (their code, the pair, the side): no slot,
    # no post id, nothing of the source file.
    return {side: f"/api/p/{code}/image/{pair_id}/{side}" for side in ("left", "right")}


def _answered(s: Session, p: Participant) -> set[int]:
    return set(s.scalars(select(Answer.pair_id).where(Answer.participant_id == p.id)))


def _pair_ids(s: Session, *kinds: str) -> list[int]:
    return list(s.scalars(select(Pair.id).where(Pair.kind.in_(kinds)).order_by(Pair.id)))


def _todo(s: Session, secret: bytes, p: Participant) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The participant's pairs still to answer, in order, and their progress counts."""
    answered = _answered(s, p)
    training = _pair_ids(s, "training")
    trials = trial_order(secret, p.code, _pair_ids(s, "trial", "attention"))
    base = {"code": p.code, "training_total": len(training), "trials_total": len(trials),
            "trials_done": sum(1 for t in trials if t in answered)}
    todo = [("training", i) for i in training if i not in answered]
    todo += [("trial", i) for i in trials if i not in answered]
    return todo, base


def check_pair_id(pair_id: int) -> None:
    if not 1 <= pair_id <= MAX_ID:
        raise StudyError(f"pair {pair_id}: no such pair", 404)


def stimulus(store: Store, code: str, pair_id: int, side: str) -> bytes:
    """The image on ``side`` of a pair, for a participant who is shown it now or has
    answered it; anyone else gets 404 (a code cannot fetch images ahead of its trials)."""
    if side not in ("left", "right"):
        raise StudyError(f"side: expected left or right, got {side!r}", 422)
    check_pair_id(pair_id)
    with store.session() as s:
        study = store.study(s)
        p = _participant(s, code)
        todo, _ = _todo(s, study.secret, p)
        current = todo[0][1] if todo else None
        if pair_id != current and pair_id not in _answered(s, p):
            raise StudyError(f"pair {pair_id}: not yours to see now", 404)
        left = left_slot(study.secret, p.code, pair_id)
        slot = left if side == "left" else ("b" if left == "a" else "a")
        row = s.get(Stimulus, (pair_id, slot))
        if row is None:
            raise StudyError(f"pair {pair_id}: image missing on the server", 404)
        return row.data


def next_item(store: Store, code: str) -> dict[str, Any]:
    """What the participant sees next: a training pair, a trial, a break, done, or closed.

    Handing out a pair in an open session records it as the pair on screen (and when it
    was first handed out: the server's response times start there). What is still to do
    and the pair recorded are read and written in one writing transaction: a request that
    read an older state (a late or retried copy of an answer) cannot put a pair already
    answered back on screen after a newer one was handed out.
    """
    with store.session(write=True) as s:
        study = store.study(s)
        p = _participant(s, code, lock=True)
        todo, base = _todo(s, study.secret, p)
        training_total = base["training_total"]
        if study.closed_at is not None:
            return {**base, "state": "closed"}
        if not todo:
            if p.finished_at is None:
                p.finished_at = utcnow()
            for open_session in s.scalars(select(StudySession).where(
                    StudySession.participant_id == p.id, StudySession.ended_at.is_(None))):
                open_session.ended_at = utcnow()
            s.commit()
            return {**base, "state": "done"}
        session = _current_session(s, p, study.session_minutes)
        if session is None:
            return {**base, "state": "break", "session_minutes": study.session_minutes}
        phase, pair_id = todo[0]
        if session.shown_pair_id != pair_id:
            session.shown_pair_id, session.shown_at = pair_id, utcnow()
            s.commit()
        index = (training_total - sum(1 for k, _ in todo if k == "training") if phase == "training"
                 else base["trials_done"]) + 1
        return {**base, "state": phase, "pair_id": pair_id, "index": index, **_image_urls(p.code, pair_id)}


def _check_client_ms(response_ms: int | None) -> None:
    if response_ms is None:
        return
    if not isinstance(response_ms, int) or isinstance(response_ms, bool) or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise StudyError(f"response_ms: expected an integer 0..{MAX_RESPONSE_MS}, got {response_ms!r}", 422)


def _feedback(pair: Pair, stored: Answer) -> dict[str, Any]:
    high_side = "left" if pair.high_slot == stored.left_slot else "right"
    return {"correct": stored.correct, "more_popular": high_side, "your_choice": stored.chosen_side}


def submit_answer(store: Store, code: str, pair_id: int, side: str, response_ms: int | None = None) -> dict[str, Any]:
    """Record a choice for the pair on screen and return the next item.

    A repeated answer to an answered pair is idempotent (the first answer stays, "duplicate").
    Otherwise only the pair handed out in the participant's current session is accepted:
    another pair, or any pair during a break, is refused with 409. ``response_ms`` is the
    client's own timing, kept as ``client_response_ms``; the stored ``response_ms`` is the
    server's. Training answers come back with feedback; others never reveal the truth.
    The check and the answer are one writing transaction (see :class:`Store`), so a copy of
    the answer committed by a concurrent request is seen here and answered "duplicate".
    """
    if side not in ("left", "right"):
        raise StudyError(f"side: expected left or right, got {side!r}", 422)
    _check_client_ms(response_ms)
    check_pair_id(pair_id)
    with store.session(write=True) as s:
        study = store.study(s)
        p = _participant(s, code, lock=True)
        pair = s.get(Pair, pair_id)
        if pair is None:
            raise StudyError(f"pair {pair_id}: no such pair", 404)
        stored = s.scalar(select(Answer).where(Answer.participant_id == p.id, Answer.pair_id == pair.id))
        created = False
        if stored is None:
            _open_study(store, s)
            session = _current_session(s, p, study.session_minutes)
            if session is None:
                raise StudyError("your session has ended: start a new session to go on", 409)
            if session.shown_pair_id != pair.id:
                raise StudyError(f"pair {pair.id}: not the pair shown to you now", 409)
            left = left_slot(study.secret, p.code, pair.id)
            chosen = left if side == "left" else ("b" if left == "a" else "a")
            elapsed = (utcnow() - session.shown_at).total_seconds() * 1000
            stored, created = record_answer(s, Answer(
                participant_id=p.id, pair_id=pair.id, session_id=session.id, left_slot=left,
                chosen_side=side, chosen_slot=chosen, correct=chosen == pair.high_slot,
                response_ms=int(min(max(elapsed, 0), MAX_RESPONSE_MS)), client_response_ms=response_ms))
        reply: dict[str, Any] = {"status": "recorded" if created else "duplicate", "pair_id": pair.id}
        if pair.kind == "training":
            reply["feedback"] = _feedback(pair, stored)
    reply["next"] = next_item(store, code)
    return reply


def review(store: Store, code: str) -> dict[str, Any]:
    """The participant's choices once they have finished; their score (``score_percent``,
    the share of trial pairs chosen right, in whole percent) and the answers to each pair
    (``more_popular``, ``correct``, ``attention_check``) only once the study is closed.

    Why an open study leaks nothing through the participant API: the stimuli are the same
    bytes for every code, so anything a code learns about one pair holds for the next code,
    and a single bit that depends on the key is enough (a score, even rounded, moves when one
    answer is flipped: codes that differ in one answer each read the key pair by pair). So
    while the study is open no reply is a function of the key of a non-training pair:

    - an answer's reply is its status, the pair id and what comes next; what comes next is
      chosen from the pairs already answered and the secret order, never from ``correct``;
    - :func:`next_item` (progress counts, break, done) counts answers, not right ones;
    - the review lists the participant's own choices (which they sent) and ``score_percent``
      is ``None`` whatever they chose;
    - training pairs carry feedback, but they are disjoint from the trials and attention
      pairs (``create_study`` draws them apart).

    Every reply is therefore the same function of what the code sent whatever the key
    is, and a code learns from the server nothing it did not already know (the
    differential attack is played in ``tests/test_study_attacks.py``). Nothing aggregated
    is shown to participants either. The admin pages and exports (token holders) and
    ``iipa study export``/``analyze`` (database holders) do show accuracies while the study
    runs: whoever holds the token or the database holds the key itself (``high_id``).
    """
    with store.session() as s:
        study = store.study(s)
        p = _participant(s, code)
        closed = study.closed_at is not None
        if p.finished_at is None and not closed:
            raise StudyError("the review opens when all trials are answered", 403)
        rows = s.execute(select(Answer, Pair).join(Pair, Answer.pair_id == Pair.id)
                         .where(Answer.participant_id == p.id, Pair.kind != "training")
                         .order_by(Answer.answered_at, Answer.id)).all()
        items = []
        for ans, pair in rows:
            item = {"pair_id": pair.id, **_image_urls(p.code, pair.id), "your_choice": ans.chosen_side}
            if closed:
                item |= {"correct": ans.correct, "attention_check": pair.kind == "attention",
                         "more_popular": "left" if pair.high_slot == ans.left_slot else "right"}
            items.append(item)
        score = None
        if closed:
            trials = [ans.correct for ans, pair in rows if pair.kind == "trial"]
            score = round(100 * sum(trials) / len(trials)) if trials else None
    return {"code": p.code, "closed": closed, "answers": items, "n": len(items), "score_percent": score}
