"""The study's web app (FastAPI): a static single page plus a small JSON API.

Participant API (the participant code is the credential; it only opens that participant's
own data): ``POST /api/participants`` (consent + demographics -> code),
``POST /api/p/{code}/sessions`` (start or resume after a break), ``GET /api/p/{code}/next``,
``POST /api/p/{code}/answers`` (idempotent), ``GET /api/p/{code}/review`` (403 until done).
Images: ``GET /api/image/{pair_id}/{a|b}``, read from the path stored for that pair, never
from a client-supplied path; slots a/b are in random order, so URLs do not reveal truth.
Admin (token in ``Authorization: Bearer``, ``X-Admin-Token`` or ``?token=``): ``/admin``,
``/admin/export/{answers|participants|pairs}.{csv|json}``.
"""

from __future__ import annotations

import functools
import html
import io
import secrets
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, StrictBool, StrictInt

from iipa.study import service
from iipa.study.exports import answers_frame, pairs_frame, participants_frame, write_frame
from iipa.study.storage import BLANK_PREFIX, Pair, Store

STATIC = Path(__file__).parent / "static"


class NewParticipant(BaseModel):
    consent: StrictBool
    gender: str
    age_band: str
    instagram: StrictBool
    social_over_3h: StrictBool
    client_token: str | None = None  # makes a retried sign-up idempotent


class NewAnswer(BaseModel):
    pair_id: StrictInt
    side: Literal["left", "right"]
    response_ms: StrictInt


@functools.lru_cache(maxsize=64)
def blank_png(grey: int, size: int = 256) -> bytes:
    """The decoy of an attention-check pair: a flat grey square."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (grey, grey, grey)).save(buf, format="PNG")
    return buf.getvalue()


def create_app(db: str | Store, *, admin_token: str) -> FastAPI:
    """The app for one study database; ``admin_token`` guards the admin pages and exports."""
    if not admin_token:
        raise ValueError("admin_token must be a non-empty string")
    store = db if isinstance(db, Store) else Store(db)
    app = FastAPI(title="iipa 2AFC study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store

    @app.exception_handler(service.StudyError)
    def _study_error(_request: Request, exc: service.StudyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

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
    def new_participant(body: NewParticipant) -> dict:
        code = service.create_participant(store, **body.model_dump())
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

    @app.get("/api/image/{pair_id}/{slot}")
    def image(pair_id: int, slot: Literal["a", "b"]) -> Response:
        with store.session() as s:
            pair = s.get(Pair, pair_id)
            if pair is None:
                raise service.StudyError(f"pair {pair_id}: no such pair", 404)
            post_id, path = pair.slot_id(slot), pair.slot_path(slot)
        headers = {"Cache-Control": "private, max-age=3600"}
        if post_id.startswith(BLANK_PREFIX):
            return Response(blank_png(int(post_id[len(BLANK_PREFIX):])), media_type="image/png", headers=headers)
        if not path or not Path(path).is_file():
            raise service.StudyError(f"pair {pair_id}: image {slot} is missing on the server", 404)
        return FileResponse(path, headers=headers)

    def require_admin(request: Request) -> None:
        given = (request.headers.get("x-admin-token") or request.query_params.get("token")
                 or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        if not given or not secrets.compare_digest(given.encode(), admin_token.encode()):
            raise service.StudyError("admin token required", 403)

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> HTMLResponse:
        require_admin(request)
        return HTMLResponse(admin_page(store, request.query_params.get("token", "")))

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


def admin_page(store: Store, token: str) -> str:
    """Progress of every participant, with links to the exports."""
    people = participants_frame(store)
    with store.session() as s:
        name = store.study(s).name
    q = f"?token={html.escape(token)}" if token else ""
    links = " · ".join(f'<a href="/admin/export/{t}.{f}{q}">{t}.{f}</a>'
                       for t in ("answers", "participants", "pairs") for f in ("csv", "json"))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in people.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
                   + "</tr>" for row in people.itertuples(index=False))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)} admin</title>"
            "<link rel='stylesheet' href='/static/study.css'></head><body class='admin'>"
            f"<h1>{html.escape(name)}</h1><p>{len(people)} participants, "
            f"{int(people['finished_at'].notna().sum())} finished, {int(people['excluded'].sum())} "
            f"excluded by attention checks.</p><p>Exports: {links}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>")
