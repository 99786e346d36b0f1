"""The study web app in-process: admin token, exports, no ground truth before the end,
images only by pair id, request validation."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from iipa.study import Store
from iipa.study.app import create_app
from iipa.study.storage import Pair
from study_util import make_study

TOKEN = "t0ken-for-tests"
DEMO = {"consent": True, "gender": "male", "age_band": "30-39", "instagram": False, "social_over_3h": True}


@pytest.fixture
def study(tmp_path):
    db = make_study(tmp_path, n=4, training=2, attention=1)
    store = Store(db)
    with TestClient(create_app(store, admin_token=TOKEN)) as client:
        yield client, store


def _post_ids(store: Store) -> set[str]:
    with store.session() as s:
        return {x for p in s.scalars(select(Pair)) for x in (p.a_id, p.b_id, p.a_path or "", p.b_path or "")} - {""}


def _run_to_end(client: TestClient) -> tuple[str, list[str]]:
    r = client.post("/api/participants", json=DEMO)
    assert r.status_code == 201
    code, item, texts = r.json()["code"], r.json()["next"], [r.text]
    while item["state"] != "done":
        r = client.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "right", "response_ms": 321})
        assert r.status_code == 200, r.text
        texts.append(r.text)
        item = r.json()["next"]
    return code, texts


def test_index_and_static_pages_are_served_without_cdn(study):
    client, _ = study
    page = client.get("/")
    assert page.status_code == 200 and "study.js" in page.text
    for path in ("/static/study.js", "/static/study.css"):
        assert client.get(path).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no external resources


def test_admin_pages_and_exports_need_the_token(study):
    client, _ = study
    code, _texts = _run_to_end(client)
    for url in ("/admin", "/admin/export/answers.csv", "/admin/export/pairs.json"):
        assert client.get(url).status_code == 403
        assert client.get(url, headers={"X-Admin-Token": "wrong"}).status_code == 403
        assert client.get(url + "?token=" + TOKEN[:-1]).status_code == 403
    assert client.get("/admin", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    page = client.get("/admin", headers={"X-Admin-Token": TOKEN})
    assert page.status_code == 200 and code in page.text
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/export/answers.csv", headers={"X-Admin-Token": TOKEN}).text)))
    assert len(rows) == 2 + 4 + 1 and {r["participant"] for r in rows} == {code}
    # response_ms is the server's own timing; the client's 321 is kept beside it
    assert all(r["client_response_ms"] == "321" and r["chosen_side"] == "right" for r in rows)
    assert all(0 <= int(r["response_ms"]) < 60_000 for r in rows)
    people = client.get("/admin/export/participants.json", headers={"X-Admin-Token": TOKEN}).json()
    assert people[0]["participant"] == code and people[0]["n_trials"] == 4
    assert client.get("/admin/export/secrets.csv", headers={"X-Admin-Token": TOKEN}).status_code == 422


def test_no_ground_truth_or_post_ids_reach_participants_before_the_end(study):
    client, store = study
    r = client.post("/api/participants", json=DEMO)
    code, item = r.json()["code"], r.json()["next"]
    secrets_ = _post_ids(store)
    texts = [r.text]
    while item["state"] != "done":
        if item["state"] == "trial":
            rv = client.get(f"/api/p/{code}/review")
            assert rv.status_code == 403
        r = client.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "left", "response_ms": 5})
        body = r.json()
        if item["state"] == "trial":
            assert "feedback" not in body and "correct" not in r.text
        texts.append(r.text)
        # replaying the same answer changes nothing and still reveals nothing
        again = client.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "right", "response_ms": 9})
        assert again.json()["status"] == "duplicate"
        texts.append(again.text)
        item = body["next"]
    texts.append(client.get("/api/meta").text)
    for text in texts:
        assert not any(s in text for s in secrets_), text
    review = client.get(f"/api/p/{code}/review").json()
    assert review["n"] == 5 and all(a["your_choice"] == "left" for a in review["answers"])
    # another participant cannot open this review with their own code, nor guess codes
    other = client.post("/api/participants", json=DEMO).json()["code"]
    assert client.get(f"/api/p/{other}/review").status_code == 403
    assert client.get("/api/p/AAAAAAAAAA/review").status_code == 404


def test_images_come_from_the_study_store_by_participant_and_side(study):
    client, _ = study
    item = client.post("/api/participants", json=DEMO).json()["next"]
    r = client.get(item["left"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store" and "etag" not in r.headers and "last-modified" not in r.headers
    assert client.get(item["left"].replace("/left", "/c")).status_code == 422
    assert client.get(item["left"].replace(f"/{item['pair_id']}/", "/..%2f..%2fetc%2fpasswd/")).status_code in (404, 422)
    assert client.get("/static/../storage.py").status_code == 404


def test_admin_link_token_becomes_a_cookie_and_export_links_carry_no_token(study):
    client, _ = study
    page = client.get(f"/admin?token={TOKEN}")
    assert page.status_code == 200 and TOKEN not in page.text and "token=" not in page.text
    assert "httponly" in page.headers["set-cookie"].lower()
    assert client.get("/admin/export/answers.csv").status_code == 200  # the cookie authorises it
    client.cookies.clear()
    assert client.get("/admin/export/answers.csv").status_code == 403
    assert client.get(f"/admin/export/answers.csv?token={TOKEN}").status_code == 403  # no tokens in URLs


def test_bodies_over_the_limit_get_413_before_parsing(study):
    from iipa.study.app import MAX_BODY_BYTES

    client, _ = study
    big = DEMO | {"gender": "x" * (MAX_BODY_BYTES + 10)}
    assert client.post("/api/participants", json=big).status_code == 413

    def chunks():  # no Content-Length: the streamed count decides
        for _ in range(100):
            yield b"{" + b" " * 4096
    r = client.post("/api/participants", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("body", [
    {"pair_id": 1, "side": "up", "response_ms": 1}, {"pair_id": 1, "side": "left", "response_ms": -5},
    {"pair_id": "1", "side": "left", "response_ms": 1}, {"pair_id": 1, "response_ms": 1},
    {"pair_id": 1, "side": "left", "response_ms": 1.5}])
def test_bad_answer_bodies_get_422(study, body):
    client, _ = study
    code = client.post("/api/participants", json=DEMO).json()["code"]
    assert client.post(f"/api/p/{code}/answers", json=body).status_code == 422


def test_consent_is_required(study):
    client, _ = study
    r = client.post("/api/participants", json=DEMO | {"consent": False})
    assert r.status_code == 422 and "consent" in r.text
