"""Study hardening (issue 23, item 8 and the old-database decision): sign-up and admin-token
rate limits, post ids that would read outside --images, a full disk during sign-up,
attention checks a bot cannot spot by pixel statistics, databases made before the secret."""

from __future__ import annotations

import errno
import io
import sqlite3

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy.stats import binomtest
from sqlalchemy import event, select, text

from iipa.errors import IIPAError
from iipa.study import Store, create_study, service
from iipa.study.app import ADMIN_GUESS_BURST, create_app
from iipa.study.exports import answers_frame
from iipa.study.stimuli import encode_photo
from iipa.study.storage import Pair, Stimulus, make_engine
from study_util import make_pairs, make_study

TOKEN = "hardening-token"
DEMO = {"consent": True, "gender": "male", "age_band": "30-39", "instagram": False, "social_over_3h": True}


@pytest.fixture
def db(tmp_path):
    return make_study(tmp_path, n=4, training=1, attention=1)


def test_sign_ups_are_rate_limited_per_client_address(db):
    app = create_app(Store(db), admin_token=TOKEN, signups_per_hour=12)  # two at once, then one per 5 min
    with TestClient(app, client=("10.0.0.1", 5000)) as first, TestClient(app, client=("10.0.0.2", 5000)) as other:
        ok = [first.post("/api/participants", json=DEMO | {"client_token": f"token-{i:04d}"}) for i in range(2)]
        assert [r.status_code for r in ok] == [201, 201]
        r = first.post("/api/participants", json=DEMO)
        assert r.status_code == 429 and "too many sign-ups" in r.json()["detail"]
        assert 0 < int(r.headers["retry-after"]) <= 300
        # a retried sign-up (same client token) is not a new participant: not limited
        again = first.post("/api/participants", json=DEMO | {"client_token": "token-0000"})
        assert again.status_code == 201 and again.json()["code"] == ok[0].json()["code"]
        assert other.post("/api/participants", json=DEMO).status_code == 201  # another address


def test_admin_token_guesses_are_rate_limited(db):
    app = create_app(Store(db), admin_token=TOKEN)
    with TestClient(app, client=("10.0.0.9", 5000)) as guesser, TestClient(app, client=("10.0.0.8", 5000)) as admin:
        for i in range(ADMIN_GUESS_BURST):
            assert guesser.get("/admin", headers={"X-Admin-Token": f"guess-{i}"}).status_code == 403
        r = guesser.get("/admin", headers={"X-Admin-Token": "guess-x"})
        assert r.status_code == 429 and "wrong admin tokens" in r.json()["detail"] and r.headers["retry-after"]
        # blocked means blocked: the right token from that address does not get through either
        assert guesser.get("/admin/export/answers.csv", headers={"X-Admin-Token": TOKEN}).status_code == 429
        assert admin.get("/admin/export/answers.csv", headers={"X-Admin-Token": TOKEN}).status_code == 200


@pytest.mark.parametrize("bad", ["../outside", "sub/photo", "..\\outside", ".."])
def test_post_ids_that_name_files_outside_images_are_refused(tmp_path, run_cli, bad):
    pairs, images = make_pairs(tmp_path, n_test=6)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    df = pd.read_csv(pairs, dtype=str)
    df.loc[3, "low_id"] = bad
    df.to_csv(pairs, index=False)
    with pytest.raises(IIPAError, match=r"row 5: low_id .* is not a post id"):
        create_study(Store(str(tmp_path / "s.sqlite"), create=True), pairs, images, n=4, training=1)
    code, _, err = run_cli("study", "init", "--pairs", pairs, "--images", images, "--db", tmp_path / "t.sqlite")
    assert code == 2 and "row 5" in err and "--images" in err


def test_a_full_disk_during_sign_up_is_a_json_507(tmp_path):
    db = make_study(tmp_path, n=4, training=1, attention=1)
    engine = make_engine(db)
    with engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar()

    def small_disk(dbapi_conn, _record) -> None:  # what SQLite reports on ENOSPC: SQLITE_FULL
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 1}")

    event.listen(engine, "connect", small_disk)
    engine.dispose()
    with TestClient(create_app(Store(engine), admin_token=TOKEN, signups_per_hour=10**6)) as client:
        for _ in range(500):
            r = client.post("/api/participants", json=DEMO)
            if r.status_code != 201:
                break
        assert r.status_code == 507, r.text
        assert r.headers["content-type"] == "application/json" and "disk is full" in r.json()["detail"]


def test_an_oserror_enospc_is_a_json_507(db, monkeypatch):
    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(service, "create_participant", no_space)
    with TestClient(create_app(Store(db), admin_token=TOKEN)) as client:
        r = client.post("/api/participants", json=DEMO)
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


def test_attention_checks_are_photos_with_a_written_instruction(tmp_path):
    pairs, images = make_pairs(tmp_path, n_test=70, size=48)
    store = Store(str(tmp_path / "s.sqlite"), create=True)
    summary = create_study(store, pairs, images, n=20, training=1, attention=24, seed=0)
    assert summary.attention == 24
    with store.session() as s:
        checks = [(p, {st.slot: st.data for st in s.scalars(select(Stimulus).where(Stimulus.pair_id == p.id))})
                  for p in s.scalars(select(Pair).where(Pair.kind == "attention"))]
    # The old decoy was a flat grey square: "the side with any texture" answered every check.
    # Pixel statistics of the two sides now pick the right one no better than chance.
    rules = {"std": lambda x: x.std(), "mean": lambda x: x.mean(), "edges": lambda x: np.abs(np.diff(x)).mean()}
    for name, stat in rules.items():
        hits = sum((stat(_pixels(data["a"])) > stat(_pixels(data["b"]))) == (p.high_slot == "a")
                   for p, data in checks)
        assert binomtest(hits, len(checks), 0.5).pvalue > 1e-3, f"{name} picks {hits}/{len(checks)}"
    for p, data in checks:
        assert len(data["a"]) == len(data["b"])  # padded alike, like every pair
        for slot in ("a", "b"):
            shown, photo = _pixels(data[slot]), _pixels(encode_photo(p.slot_path(slot)))
            assert shown.std() > 20  # a photo, not a flat square
            rows = np.flatnonzero(np.abs(shown - photo).mean(axis=1) > 20)  # where the banner is
            assert 20 < len(rows) < 120 and 200 < rows.min() and rows.max() < 312
        assert np.abs(_pixels(data["a"]) - _pixels(data["b"]))[200:312].mean() > 1  # different photos


def test_a_database_made_before_the_secret_is_exported_but_not_served(db, run_cli):
    # An older iipa made no secret and none of the newer columns: drop them.
    conn = sqlite3.connect(db)
    for table, column in (("study", "secret"), ("study", "closed_at"), ("answers", "client_response_ms"),
                          ("sessions", "shown_pair_id"), ("sessions", "shown_at")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.commit()
    conn.close()
    store = Store(db)  # the columns come back, empty
    assert len(answers_frame(store)) == 0
    with pytest.raises(IIPAError, match="older iipa whose answer key .* follow from --seed"):
        create_app(store, admin_token=TOKEN)
    code, _, err = run_cli("study", "serve", "--db", db, "--admin-token", TOKEN)
    assert code == 2 and "cannot be served" in err
    code, out, err = run_cli("study", "export", "--db", db, "--table", "pairs", "--format", "json")
    assert code == 0 and '"pair_id"' in out, err


def test_study_close_ends_sign_ups_and_answers(db, run_cli):
    with TestClient(create_app(Store(db), admin_token=TOKEN)) as client:
        code, item = (lambda r: (r["code"], r["next"]))(client.post("/api/participants", json=DEMO).json())
        status, out, err = run_cli("study", "close", "--db", db)
        assert status == 0 and "closed" in out, err
        r = client.post(f"/api/p/{code}/answers", json={"pair_id": item["pair_id"], "side": "left"})
        assert r.status_code == 409 and r.json()["detail"] == "the study is closed"
        assert client.post("/api/participants", json=DEMO).status_code == 409
        assert client.get(f"/api/p/{code}/next").json()["state"] == "closed"
        assert client.get(f"/api/p/{code}/review").json()["closed"] is True


def test_rate_limit_refills_and_forgets_the_oldest_keys():
    from iipa.study.limits import RateLimit

    now = [0.0]
    limit = RateLimit(per_hour=60, burst=2, max_keys=3, clock=lambda: now[0])
    assert [limit.hit("a"), limit.hit("a")] == [0.0, 0.0]
    assert limit.hit("a") == 60 and limit.blocked("a") == 60  # one a minute
    now[0] = 30.0
    assert limit.hit("a") == 30  # refused hits take nothing
    now[0] = 60.0
    assert limit.blocked("a") == 0.0 and limit.hit("a") == 0.0 and limit.hit("a") == 60
    for key in ("b", "c", "d"):  # "a" is the least recently seen: forgotten, full again
        limit.hit(key)
    assert limit.hit("a") == 0.0
    with pytest.raises(ValueError):
        RateLimit(per_hour=0, burst=1)
