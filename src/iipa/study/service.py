"""What a participant can do, as plain functions over a :class:`Store` (the web app is a
thin layer over these).

Phases: training pairs (with feedback) -> trial and attention pairs in a seeded order
(no feedback; attention pairs look like any other trial) -> done (review). A session
lasts at most ``study.session_minutes``; then the participant sees a break screen and
starts a new session when ready, possibly days later with their code.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iipa.errors import IIPAError, ImageError
from iipa.study.plan import left_slot, trial_order
from iipa.study.stimuli import encode_decoy, encode_photo, equalise
from iipa.study.storage import (
    AGE_BANDS,
    BLANK_PREFIX,
    GENDERS,
    MAX_ID,
    Answer,
    Pair,
    Participant,
    Stimulus,
    Store,
    StudySession,
    record_answer,
    utcnow,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed by hand
CODE_LENGTH = 10
MAX_RESPONSE_MS = 3_600_000


class StudyError(IIPAError):
    """A request the study cannot honour; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _participant(s: Session, code: str) -> Participant:
    p = s.scalar(select(Participant).where(Participant.code == normalise_code(code)))
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
                       instagram: Any, social_over_3h: Any, client_token: str | None = None) -> str:
    """Register a consenting participant; returns their code.

    With ``client_token`` the call is idempotent: the same token returns the same code.
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
    with store.session() as s:
        store.study(s)
        if client_token is not None:
            known = s.scalar(select(Participant.code).where(Participant.client_token == client_token))
            if known is not None:
                return known
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
    with store.session() as s:
        p = _participant(s, code)
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


def _todo(s: Session, seed: int, p: Participant) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The participant's pairs still to answer, in order, and their progress counts."""
    answered = _answered(s, p)
    training = _pair_ids(s, "training")
    trials = trial_order(seed, p.code, _pair_ids(s, "trial", "attention"))
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
        todo, _ = _todo(s, study.seed, p)
        current = todo[0][1] if todo else None
        if pair_id != current and pair_id not in _answered(s, p):
            raise StudyError(f"pair {pair_id}: not yours to see now", 404)
        left = left_slot(study.seed, p.code, pair_id)
        slot = left if side == "left" else ("b" if left == "a" else "a")
        row = s.get(Stimulus, (pair_id, slot))
        if row is not None:
            return row.data
        pair = s.get(Pair, pair_id)
    if pair is None:
        raise StudyError(f"pair {pair_id}: no such pair", 404)
    a, b = equalise(_encode_late(pair, "a"), _encode_late(pair, "b"))
    return a if slot == "a" else b


def _encode_late(pair: Pair, slot: str) -> bytes:
    """A study made before stimuli were stored: encode the same way on the fly."""
    post_id, path = pair.slot_id(slot), pair.slot_path(slot)
    if post_id.startswith(BLANK_PREFIX):
        return encode_decoy(int(post_id[len(BLANK_PREFIX):]))
    try:
        return encode_photo(path or "")
    except ImageError:
        raise StudyError(f"pair {pair.id}: image missing on the server", 404) from None


def next_item(store: Store, code: str) -> dict[str, Any]:
    """What the participant sees next: a training pair, a trial, a break, or done."""
    with store.session() as s:
        study = store.study(s)
        p = _participant(s, code)
        todo, base = _todo(s, study.seed, p)
        training_total = base["training_total"]
        if not todo:
            if p.finished_at is None:
                p.finished_at = utcnow()
            for open_session in s.scalars(select(StudySession).where(
                    StudySession.participant_id == p.id, StudySession.ended_at.is_(None))):
                open_session.ended_at = utcnow()
            s.commit()
            return {**base, "state": "done"}
        if _current_session(s, p, study.session_minutes) is None:
            return {**base, "state": "break", "session_minutes": study.session_minutes}
        phase, pair_id = todo[0]
        index = (training_total - sum(1 for k, _ in todo if k == "training") if phase == "training"
                 else base["trials_done"]) + 1
        return {**base, "state": phase, "pair_id": pair_id, "index": index, **_image_urls(p.code, pair_id)}


def submit_answer(store: Store, code: str, pair_id: int, side: str, response_ms: int) -> dict[str, Any]:
    """Record a choice (idempotent per participant and pair) and return the next item.

    Training answers come back with feedback; trial answers never reveal the truth.
    """
    if side not in ("left", "right"):
        raise StudyError(f"side: expected left or right, got {side!r}", 422)
    if not isinstance(response_ms, int) or isinstance(response_ms, bool) or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise StudyError(f"response_ms: expected an integer 0..{MAX_RESPONSE_MS}, got {response_ms!r}", 422)
    check_pair_id(pair_id)
    with store.session() as s:
        study = store.study(s)
        p = _participant(s, code)
        pair = s.get(Pair, pair_id)
        if pair is None:
            raise StudyError(f"pair {pair_id}: no such pair", 404)
        if pair.kind != "training":
            n_training = len(_pair_ids(s, "training"))
            done = s.scalar(select(func.count()).select_from(Answer).join(Pair, Answer.pair_id == Pair.id)
                            .where(Answer.participant_id == p.id, Pair.kind == "training"))
            if done < n_training:
                raise StudyError("finish the training pairs first", 409)
        left = left_slot(study.seed, p.code, pair.id)
        chosen = left if side == "left" else ("b" if left == "a" else "a")
        latest = s.scalar(select(StudySession.id).where(StudySession.participant_id == p.id)
                          .order_by(StudySession.id.desc()).limit(1))
        stored, created = record_answer(s, Answer(
            participant_id=p.id, pair_id=pair.id, session_id=latest, left_slot=left,
            chosen_side=side, chosen_slot=chosen, correct=chosen == pair.high_slot,
            response_ms=response_ms))
        reply: dict[str, Any] = {"status": "recorded" if created else "duplicate", "pair_id": pair.id}
        if pair.kind == "training":
            high_side = "left" if pair.high_slot == stored.left_slot else "right"
            reply["feedback"] = {"correct": stored.correct, "more_popular": high_side,
                                 "your_choice": stored.chosen_side}
    reply["next"] = next_item(store, code)
    return reply


def review(store: Store, code: str) -> dict[str, Any]:
    """The participant's choices against the ground truth; only once they have finished."""
    with store.session() as s:
        store.study(s)
        p = _participant(s, code)
        if p.finished_at is None:
            raise StudyError("the review opens when all trials are answered", 403)
        rows = s.execute(select(Answer, Pair).join(Pair, Answer.pair_id == Pair.id)
                         .where(Answer.participant_id == p.id, Pair.kind != "training")
                         .order_by(Answer.answered_at, Answer.id)).all()
        items = []
        for ans, pair in rows:
            items.append({"pair_id": pair.id, **_image_urls(p.code, pair.id),
                          "your_choice": ans.chosen_side, "correct": ans.correct,
                          "more_popular": "left" if pair.high_slot == ans.left_slot else "right",
                          "attention_check": pair.kind == "attention", "response_ms": ans.response_ms})
    n = len(items)
    return {"code": p.code, "answers": items, "n": n,
            "accuracy": sum(i["correct"] for i in items) / n if n else None}
