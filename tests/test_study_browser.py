"""End to end in headless Chromium: consent -> demographics -> training (feedback) ->
trials (keyboard and mouse, with a page reload and resume by code, and a session that runs
out with a pair on screen) -> review (choices only while open; score and answers once closed); then
the answers are in the database with the sides the participant chose."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from iipa.study import Store
from iipa.study.app import create_app
from iipa.study.plan import left_slot
from iipa.study.service import close_study
from iipa.study.storage import Answer, Pair, Participant, Study, StudySession
from study_util import make_study

CHROMIUM = Path("/usr/bin/chromium")


def _need_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    if missing:
        msg = "browser test needs " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def live_app(tmp_path):
    import uvicorn

    db = make_study(tmp_path, n=3, training=2, attention=1)
    store = Store(db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store, admin_token="x"), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(10)


@pytest.mark.browser
@pytest.mark.slow
def test_participant_flow_in_chromium(live_app):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    # Each expectation ends as soon as it holds; 30 s (Playwright's default is 5) only bounds a
    # failure, so a loaded machine cannot fail it (an answer's round trip took > 5 s once).
    expect.set_options(timeout=30_000)
    base, store = live_app
    pressed: dict[int, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(base)
            page.click("#start-new")
            expect(page.locator("#consent-next")).to_be_disabled()
            page.check("#consent-box")
            page.click("#consent-next")
            page.select_option("#gender", "female")
            page.select_option("#age-band", "20-29")
            page.check("input[name=instagram][value=yes]")
            page.check("input[name=social][value=no]")
            page.click("#demo-submit")
            trial = page.locator("#trial")

            def answer(key: str | None, side: str) -> None:
                expect(trial).to_have_attribute("data-ready", "1")
                # Both stimuli really loaded (onerror also sets data-ready), at the study's size.
                sizes = page.evaluate("['left', 'right'].map(s => document.getElementById('img-' + s).naturalWidth)")
                assert sizes == [512, 512], sizes
                pid = int(trial.get_attribute("data-pair"))
                if key:
                    page.keyboard.press(key)
                else:
                    page.click(f"#choose-{side}")
                pressed[pid] = side

            for key, side in (("ArrowLeft", "left"), ("j", "right")):  # training, with feedback
                expect(page.locator("#phase-label")).to_have_text("Training pair")
                answer(key, side)
                expect(page.locator("#feedback")).to_be_visible()
                expect(page.locator("#feedback-text")).to_contain_text("image received more likes")
                page.keyboard.press("Enter")
            code = page.locator("#trial .code").inner_text()
            expect(page.locator("#phase-label")).to_have_text("Pair")
            answer("f", "left")
            expect(page.locator("#progress")).to_have_text("2 of 4")
            page.reload()  # the browser reloads mid-study: resume with the remembered code
            expect(page.locator("#resume-code")).to_have_value(code)
            page.click("#resume")
            expect(page.locator("#progress")).to_have_text("2 of 4")
            answer(None, "right")
            expect(page.locator("#progress")).to_have_text("3 of 4")
            # The session runs out while a pair is on screen: the server refuses the answer
            # (409) and the page shows the break screen; a new session shows the same pair.
            expect(trial).to_have_attribute("data-ready", "1")
            on_screen = trial.get_attribute("data-pair")
            with store.session() as s:
                for row in s.scalars(select(StudySession)):
                    row.started_at -= timedelta(minutes=31)
                s.commit()
            page.keyboard.press("ArrowRight")
            expect(page.locator("#break")).to_be_visible()
            page.click("#continue-session")
            expect(page.locator("#progress")).to_have_text("3 of 4")
            expect(trial).to_have_attribute("data-pair", on_screen)
            answer("ArrowRight", "right")
            expect(page.locator("#progress")).to_have_text("4 of 4")
            answer("ArrowLeft", "left")
            expect(page.locator("#done")).to_be_visible()
            expect(page.locator("#review tbody tr")).to_have_count(4)
            # while the study is open: the choices, neither a score nor which image received more likes
            expect(page.locator("#review-summary")).to_have_text("")
            expect(page.locator("#review-note")).to_be_visible()
            expect(page.locator("#review tbody tr").first.locator("td")).to_have_count(4)
            # The review shows the answered pairs' images (allowed: they are answered).
            page.wait_for_function("[...document.querySelectorAll('#review tbody img')]"
                                   ".every(i => i.complete && i.naturalWidth === 512)")
            close_study(store)  # once closed, the review shows which image received more likes
            page.reload()
            page.click("#resume")
            expect(page.locator("#review-note")).to_be_hidden()
            expect(page.locator("#review-summary")).to_contain_text("% of the pairs")
            expect(page.locator("#review tbody tr").first.locator("td")).to_have_count(6)
        finally:
            browser.close()

    with store.session() as s:
        secret = s.get(Study, 1).secret
        person = s.scalar(select(Participant).where(Participant.code == code))
        assert person.gender == "female" and person.instagram and not person.social_over_3h
        assert person.finished_at is not None
        rows = s.execute(select(Answer, Pair).join(Pair, Answer.pair_id == Pair.id)
                         .where(Answer.participant_id == person.id)).all()
    assert {a.pair_id: a.chosen_side for a, _ in rows} == pressed
    assert len(rows) == 6 and sorted(q.kind for _, q in rows).count("training") == 2
    for a, q in rows:
        assert a.left_slot == left_slot(secret, code, q.id)
        assert a.chosen_slot == (a.left_slot if a.chosen_side == "left" else ("b" if a.left_slot == "a" else "a"))
        assert 0 <= a.response_ms < 60_000
