"""Study data as tables: answers (one row per committed answer) and participants (with
progress, accuracy and the attention-check verdict). Used by the admin pages, the
CSV/JSON exports and the analysis, so all three agree.
"""

from __future__ import annotations

import json
from typing import IO

import pandas as pd
from sqlalchemy import select

from iipa.csvsafe import frame_to_csv
from iipa.study.storage import Answer, Pair, Participant, Store, StudySession

ANSWER_COLUMNS = ("participant", "pair_id", "kind", "high_id", "low_id", "left_id", "right_id",
                  "chosen_id", "chosen_side", "correct", "response_ms", "client_response_ms", "session_id", "answered_at",
                  "gender", "age_band", "instagram", "social_over_3h")
PARTICIPANT_COLUMNS = ("participant", "gender", "age_band", "instagram", "social_over_3h",
                       "consented_at", "finished_at", "sessions", "n_training", "n_trials",
                       "n_attention", "trial_accuracy", "attention_accuracy", "excluded")
PAIR_COLUMNS = ("pair_id", "kind", "high_id", "low_id", "high_path", "low_path", "user_id", "p", "delta_s")


def answers_frame(store: Store) -> pd.DataFrame:
    """Every committed answer with its pair's ground truth and the participant's demographics."""
    with store.session() as s:
        rows = s.execute(select(Answer, Pair, Participant)
                         .join(Pair, Answer.pair_id == Pair.id)
                         .join(Participant, Answer.participant_id == Participant.id)
                         .order_by(Answer.id)).all()
        out = []
        for ans, pair, p in rows:
            right = "b" if ans.left_slot == "a" else "a"
            out.append({"participant": p.code, "pair_id": pair.id, "kind": pair.kind,
                        "high_id": pair.high_id, "low_id": pair.low_id,
                        "left_id": pair.slot_id(ans.left_slot), "right_id": pair.slot_id(right),
                        "chosen_id": pair.slot_id(ans.chosen_slot), "chosen_side": ans.chosen_side,
                        "correct": bool(ans.correct), "response_ms": ans.response_ms,
                        "client_response_ms": ans.client_response_ms,
                        "session_id": ans.session_id, "answered_at": ans.answered_at.isoformat(),
                        "gender": p.gender, "age_band": p.age_band, "instagram": bool(p.instagram),
                        "social_over_3h": bool(p.social_over_3h)})
    return pd.DataFrame(out, columns=list(ANSWER_COLUMNS))


def pairs_frame(store: Store) -> pd.DataFrame:
    with store.session() as s:
        rows = [{"pair_id": q.id, "kind": q.kind, "high_id": q.high_id, "low_id": q.low_id,
                 "high_path": q.slot_path(q.high_slot),
                 "low_path": q.slot_path("b" if q.high_slot == "a" else "a"),
                 "user_id": q.user_id, "p": q.p, "delta_s": q.delta_s}
                for q in s.scalars(select(Pair).order_by(Pair.id))]
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def participants_frame(store: Store, answers: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per participant; ``excluded`` when attention-check accuracy < the study's pass mark.

    A participant who has answered no attention pair yet is not excluded (nothing to judge).
    """
    answers = answers_frame(store) if answers is None else answers
    with store.session() as s:
        threshold = store.study(s).attention_pass
        people = list(s.scalars(select(Participant).order_by(Participant.id)))
        sessions: dict[int, int] = {}
        for pid in s.scalars(select(StudySession.participant_id)):
            sessions[pid] = sessions.get(pid, 0) + 1
    out = []
    for p in people:
        mine = answers[answers["participant"] == p.code]
        by_kind = {k: mine[mine["kind"] == k] for k in ("training", "trial", "attention")}
        att = by_kind["attention"]
        att_acc = float(att["correct"].mean()) if len(att) else None
        trial_acc = float(by_kind["trial"]["correct"].mean()) if len(by_kind["trial"]) else None
        out.append({"participant": p.code, "gender": p.gender, "age_band": p.age_band,
                    "instagram": bool(p.instagram), "social_over_3h": bool(p.social_over_3h),
                    "consented_at": p.consented_at.isoformat(),
                    "finished_at": p.finished_at.isoformat() if p.finished_at else None,
                    "sessions": sessions.get(p.id, 0), "n_training": len(by_kind["training"]),
                    "n_trials": len(by_kind["trial"]), "n_attention": len(att),
                    "trial_accuracy": trial_acc, "attention_accuracy": att_acc,
                    "excluded": att_acc is not None and att_acc < threshold})
    return pd.DataFrame(out, columns=list(PARTICIPANT_COLUMNS))


def write_frame(df: pd.DataFrame, fmt: str, fh: IO[str]) -> None:
    """CSV or JSON (a list of records) to a text stream."""
    if fmt == "csv":
        frame_to_csv(df, fh)
    elif fmt == "json":
        json.dump(json.loads(df.to_json(orient="records")), fh, indent=1)
        fh.write("\n")
    else:
        raise ValueError(f"unknown export format {fmt!r}; use csv or json")
