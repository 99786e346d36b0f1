"""Durable storage of a 2AFC study (SQLAlchemy 2.x; SQLite by default, any SQLAlchemy URL).

Tables: ``study`` (one row of settings, and the study's ``secret``: 32 random bytes drawn
at init that decide every pair's answer key, left/right placements and order; never the
seed), ``pairs`` (training, trial and attention pairs with their ground truth), ``participants`` (code and demographics), ``sessions`` and
``answers``. A session remembers the pair it last handed out (``shown_pair_id``,
``shown_at``): only that pair can be answered, and the server times the answer from then.
An answer is unique per (participant, pair), so a retried or replayed POST
finds the first answer instead of adding a second one; every answer is committed before
the server replies, hence before the next trial is shown.

The two images of a pair are stored as slots ``a`` and ``b`` in random order
(``high_slot`` says which one is the more popular post). Table ``stimuli`` holds the
bytes shown for each slot, re-encoded alike at init (:mod:`iipa.study.stimuli`), so
nothing about a source file reaches a participant.

A database made by an older version gains the newer nullable columns (empty) when opened,
so it can still be exported and analysed; :func:`iipa.study.service.check_servable` refuses
to serve one whose study has no secret (its answer key follows from the seed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from iipa.errors import IIPAError

PAIR_KINDS = ("training", "trial", "attention")
GENDERS = ("female", "male", "other", "undisclosed")
AGE_BANDS = ("<20", "20-29", "30-39", "40-49", "50+")
SECRET_BYTES = 32


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored naive, always UTC


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    session_minutes: Mapped[float] = mapped_column(Float, default=30.0)
    attention_pass: Mapped[float] = mapped_column(Float, default=0.8)
    source: Mapped[str] = mapped_column(Text, default="")  # pairs file and images folder
    # Secret randomness behind the answer key and placements; NULL in databases made before it.
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # `iipa study close`


class Pair(Base):
    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    a_id: Mapped[str] = mapped_column(String(200))
    b_id: Mapped[str] = mapped_column(String(200))
    a_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    b_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    high_slot: Mapped[str] = mapped_column(String(1))  # "a" or "b": the more popular post
    user_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    p: Mapped[float | None] = mapped_column(Float, nullable=True)
    delta_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    @property
    def high_id(self) -> str:
        return self.a_id if self.high_slot == "a" else self.b_id

    @property
    def low_id(self) -> str:
        return self.b_id if self.high_slot == "a" else self.a_id

    def slot_path(self, slot: str) -> str | None:
        return self.a_path if slot == "a" else self.b_path

    def slot_id(self, slot: str) -> str:
        return self.a_id if slot == "a" else self.b_id


class Stimulus(Base):
    """The image bytes a participant sees for one slot of one pair."""

    __tablename__ = "stimuli"
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), primary_key=True)
    slot: Mapped[str] = mapped_column(String(1), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    # Chosen by the page once per sign-up, so a POST retried after a lost reply finds the
    # participant it already created instead of registering a second one.
    client_token: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    consented_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    gender: Mapped[str] = mapped_column(String(16))
    age_band: Mapped[str] = mapped_column(String(16))
    instagram: Mapped[bool] = mapped_column(Boolean)  # has used Instagram (G_I) or not (G_II)
    social_over_3h: Mapped[bool] = mapped_column(Boolean)  # > 3 h/day on social media (G_A)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class StudySession(Base):
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    shown_pair_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the pair on screen
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # first handed out


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("participant_id", "pair_id", name="one_answer_per_trial"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), nullable=True)
    left_slot: Mapped[str] = mapped_column(String(1))
    chosen_side: Mapped[str] = mapped_column(String(5))  # left | right
    chosen_slot: Mapped[str] = mapped_column(String(1))
    correct: Mapped[bool] = mapped_column(Boolean)
    response_ms: Mapped[int] = mapped_column(Integer)  # measured by the server
    client_response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # as sent; not trusted
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def default_url(path: str | os.PathLike) -> str:
    """A SQLite URL for a file path (what ``--db study.sqlite`` means)."""
    return f"sqlite:///{Path(path).resolve()}"


def normalise_url(db: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path."""
    return db if "://" in db else default_url(db)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes each commit survive a
    # power cut (NORMAL may lose the last transactions); busy_timeout queues concurrent
    # writers instead of failing them with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    # The driver's own transaction handling opens a transaction only at the first write:
    # every read before it saw the database as of that one statement, and the write then
    # committed on top of whatever had changed since (two requests that both read "pair 14
    # next" and wrote it after a third had moved the participant on to pair 16 put 14 back
    # on screen). The transactions are begun by _sqlite_begin instead, for every statement.
    dbapi_conn.isolation_level = None


# Execution option of the engine behind Store.session(write=True).
WRITE_OPTION = "iipa_write"


def _sqlite_begin(conn) -> None:
    # A writing transaction takes SQLite's write lock before its first read (BEGIN IMMEDIATE;
    # a busy lock is waited for, busy_timeout above), so what it read still holds when it
    # writes: writers run one at a time. A reading one sees one snapshot throughout (BEGIN).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def make_engine(db: str, *, create: bool = False) -> Engine:
    """An engine for ``db`` (URL or SQLite path); ``create`` makes the tables."""
    url = normalise_url(db)
    kwargs: dict = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not create and path not in ("", ":memory:") and not Path(path).is_file():
            raise IIPAError(f"{path}: no such study database (create it with `iipa study init`)")
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    if create:
        Base.metadata.create_all(engine)
    else:
        add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """Bring a database made by an older version up to date: missing tables are created and
    missing nullable columns added (empty). Returns the ``table.column`` names added."""
    Base.metadata.create_all(engine)  # tables only: create_all never alters a table
    added = []
    with engine.begin() as conn:
        have = inspect(conn)
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in have.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
                    added.append(f"{table.name}.{column.name}")
    return added


# Pair ids are SQL INTEGERs (32-bit in PostgreSQL): ids outside this range are refused
# before they reach the database (2**63 overflowed SQLite's driver: a 500).
MAX_ID = 2**31 - 1


class Store:
    """Opens sessions on one study database.

    Each session's transactions are isolated: a reading session sees one snapshot, and a
    writing one (``write=True``) holds the database's write lock from its first statement
    on SQLite, so a decision it makes on what it read cannot be overtaken by another request
    before it commits. On other databases the service locks the participant's row
    (``SELECT ... FOR UPDATE``) for the same end.
    """

    def __init__(self, db: str | Engine, *, create: bool = False) -> None:
        self.engine = db if isinstance(db, Engine) else make_engine(db, create=create)
        if create and isinstance(db, Engine):
            Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session; ``write`` for one that reads, decides and writes (see the class)."""
        with (self._writers if write else self._sessions)() as s:
            yield s

    def study(self, s: Session) -> Study:
        study = s.get(Study, 1)
        if study is None:
            raise IIPAError(f"{self.engine.url}: database holds no study (run `iipa study init`)")
        return study

    def dispose(self) -> None:
        self.engine.dispose()


def record_answer(s: Session, answer: Answer) -> tuple[Answer, bool]:
    """Commit ``answer``; a second answer to the same trial returns the first one.

    Returns (the stored answer, True if this call created it). The unique constraint,
    not a prior SELECT, decides, so two concurrent copies of one POST cannot both win.
    """
    s.add(answer)
    try:
        s.commit()
        return answer, True
    except IntegrityError:
        s.rollback()
        existing = s.scalar(select(Answer).where(Answer.participant_id == answer.participant_id,
                                                 Answer.pair_id == answer.pair_id))
        if existing is None:  # the integrity error was something else (e.g. a foreign key)
            raise
        return existing, False
