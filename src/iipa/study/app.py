"""The study's web app (FastAPI): a static single page plus a small JSON API.

Participant API (the participant code is the credential; it only opens that participant's
own data): ``POST /api/participants`` (consent + demographics -> code),
``POST /api/p/{code}/sessions`` (start or resume after a break), ``GET /api/p/{code}/next``,
``POST /api/p/{code}/answers`` (idempotent; only for the pair on screen),
``GET /api/p/{code}/review`` (403 until done; the participant's choices, and the score and
answers only once the study is closed).
Sign-ups are rate limited per client address (429 with ``Retry-After``).
Images: ``GET /api/p/{code}/image/{pair_id}/{left|right}``, only of the participant's
current or answered pairs, from the bytes re-encoded at init (:mod:`iipa.study.stimuli`),
with ``Cache-Control: no-store`` and no header derived from a file (no Last-Modified, no
ETag), so neither a URL nor a header tells which side is the more popular.
Admin (token in ``Authorization: Bearer`` or ``X-Admin-Token``; ``/admin?token=`` once,
which sets an HttpOnly cookie so the export links carry no token): ``/admin``,
``/admin/export/{answers|participants|pairs}.{csv|json}``; wrong tokens are counted per
client address, with backoff (:class:`iipa.clientlimits.FailureBackoff`: after
``ADMIN_GUESS_BURST`` of them, 429 for every admin request from that address, right token or
not, for 10 s, doubling with each further wrong one). The client address is the connection's
unless ``--forwarded-allow-ips`` names a proxy (:mod:`iipa.clientlimits`).
Request bodies are limited to ``MAX_BODY_BYTES`` (413). Every error is JSON ``{"detail": …}``,
a full disk included (507).
"""

from __future__ import annotations

import errno
import io
import secrets
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictBool, StrictInt
from sqlalchemy.exc import SQLAlchemyError

from iipa.asgi import BodyLimit
from iipa.clientlimits import FailureBackoff
from iipa.study import service
from iipa.study.exports import answers_frame, pairs_frame, participants_frame, write_frame
from iipa.study.limits import RateLimit
from iipa.study.stimuli import MEDIA_TYPE
from iipa.study.storage import MAX_ID, Store
from iipa.templating import render

STATIC = Path(__file__).parent / "static"
# A sign-up or an answer is a few hundred bytes of JSON; 64 KiB leaves room and no more.
MAX_BODY_BYTES = 64 * 1024
ADMIN_COOKIE = "iipa_admin"
SIGNUPS_PER_HOUR = 60  # per client address; a lab behind one address raises it
# Wrong admin tokens per client address before it is blocked (then 10 s, doubling; was ~580/s).
ADMIN_GUESS_BURST = 10
PairId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


class NewParticipant(BaseModel):
    consent: StrictBool
    gender: str
    age_band: str
    instagram: StrictBool
    social_over_3h: StrictBool
    client_token: str | None = None  # makes a retried sign-up idempotent


class NewAnswer(BaseModel):
    pair_id: Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
    side: Literal["left", "right"]
    response_ms: StrictInt | None = None  # the client's own timing: stored, not trusted


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _server_error(exc: Exception) -> JSONResponse:
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in str(exc)
    if full:
        return JSONResponse({"detail": "the server's disk is full; nothing was saved, try again later"},
                            status_code=507)
    if isinstance(exc, SQLAlchemyError):
        return JSONResponse({"detail": "the study database is unavailable; try again later"}, status_code=503)
    return JSONResponse({"detail": f"server error ({exc.__class__.__name__})"}, status_code=500)


def create_app(db: str | Store, *, admin_token: str, signups_per_hour: float = SIGNUPS_PER_HOUR) -> FastAPI:
    """The app for one study database; ``admin_token`` guards the admin pages and exports.

    Refuses a study made before answer keys were secret (:func:`service.check_servable`).
    """
    if not admin_token:
        raise ValueError("admin_token must be a non-empty string")
    store = db if isinstance(db, Store) else Store(db)
    service.check_servable(store)
    signups = RateLimit(per_hour=signups_per_hour, burst=max(1, int(signups_per_hour // 6)))
    guesses = FailureBackoff(free=ADMIN_GUESS_BURST)
    app = FastAPI(title="iipa 2AFC study", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_body_bytes=MAX_BODY_BYTES)
    app.state.store = store

    @app.exception_handler(service.StudyError)
    def _study_error(_request: Request, exc: service.StudyError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    for kind in (OSError, SQLAlchemyError, Exception):  # JSON, never Starlette's plain-text 500
        app.add_exception_handler(kind, lambda _request, exc: _server_error(exc))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/meta")
    def meta() -> dict:
        with store.session() as s:
            study = store.study(s)
            return {"name": study.name, "session_minutes": study.session_minutes,
                    "genders": service.GENDERS, "age_bands": service.AGE_BANDS}

    @app.post("/api/participants", status_code=201)
    def new_participant(request: Request, body: NewParticipant) -> dict:
        def admit() -> None:  # called only for a new participant, not a retried sign-up
            wait = signups.hit(_client(request))
            if wait:
                raise service.StudyError(f"too many sign-ups from your address; try again in {int(wait)} s",
                                         429, retry_after=int(wait))

        code = service.create_participant(store, **body.model_dump(), admit=admit)
        return {"code": code, "next": service.next_item(store, code)}

    @app.post("/api/p/{code}/sessions", status_code=201)
    def new_session(code: str) -> dict:
        session_id = service.start_session(store, code)
        return {"session_id": session_id, "next": service.next_item(store, code)}

    @app.get("/api/p/{code}/next")
    def next_item(code: str) -> dict:
        return service.next_item(store, code)

    @app.post("/api/p/{code}/answers")
    def answer(code: str, body: NewAnswer) -> dict:
        return service.submit_answer(store, code, body.pair_id, body.side, body.response_ms)

    @app.get("/api/p/{code}/review")
    def review(code: str) -> dict:
        return service.review(store, code)

    @app.get("/api/p/{code}/image/{pair_id}/{side}")
    def image(code: str, pair_id: PairId, side: Literal["left", "right"]) -> Response:
        data = service.stimulus(store, code, pair_id, side)
        return Response(data, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-store"})

    def require_admin(request: Request, *, query: bool = False) -> None:
        wait = guesses.retry_after(_client(request))
        if wait:  # checked before the token: a blocked address cannot go on guessing
            raise service.StudyError(f"too many wrong admin tokens from your address; try again in {int(wait)} s",
                                     429, retry_after=int(wait))
        given = (request.headers.get("x-admin-token") or request.cookies.get(ADMIN_COOKIE)
                 or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                 or (request.query_params.get("token") if query else None))
        if not given or not secrets.compare_digest(given.encode(), admin_token.encode()):
            guesses.failed(_client(request))
            raise service.StudyError("admin token required", 403)

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> HTMLResponse:
        # ?token= is accepted here only (the link printed at start); it becomes an HttpOnly
        # cookie so the export links carry no token into URLs, logs or Referer headers.
        require_admin(request, query=True)
        page = HTMLResponse(admin_page(store), headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        if request.query_params.get("token"):
            page.set_cookie(ADMIN_COOKIE, admin_token, httponly=True, samesite="strict", path="/admin")
        return page

    @app.get("/admin/export/{table}.{fmt}")
    def export(request: Request, table: Literal["answers", "participants", "pairs"],
               fmt: Literal["csv", "json"]) -> Response:
        require_admin(request)
        frames = {"answers": answers_frame, "participants": participants_frame, "pairs": pairs_frame}
        buf = io.StringIO()
        write_frame(frames[table](store), fmt, buf)
        media = "text/csv" if fmt == "csv" else "application/json"
        return Response(buf.getvalue(), media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{table}.{fmt}"'})

    return app


def admin_page(store: Store) -> str:
    """Progress of every participant, with links to the exports (the cookie authorises them;
    template ``study_admin.html``)."""
    people = participants_frame(store)
    with store.session() as s:
        name = store.study(s).name
    return render("study_admin.html", title=f"{name} admin", name=name, n_people=len(people),
                  n_finished=int(people["finished_at"].notna().sum()), n_excluded=int(people["excluded"].sum()),
                  exports=[(t, f) for t in ("answers", "participants", "pairs") for f in ("csv", "json")],
                  columns=list(people.columns), rows=list(people.itertuples(index=False)))
