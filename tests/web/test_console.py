"""The agent console over real HTTP (`python -m web` on a free port) and in headless Chromium.

Rasa is deliberately not running here (its URL points at a closed port): these tests pin the
console's own rules (logins, who may do what, what it shows, what happens when Rasa is down).
The full live handoff with a real Rasa server is tests/e2e/test_handoff.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Iterator

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from shop.db import create_schema, make_engine, session_scope
from shop.handoff import HandoffRequest, claim, create_ticket, hash_password, request_handoff
from shop.verification import VerificationSession
from tests.browser import launch_chromium
from tests.console_login import agent_session
from tests.web.conftest import REPO_ROOT, _wait_until_healthy, free_port

EVIL_SUMMARY = "<script>alert('pwned')</script> my parcel"


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("console")
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    engine = make_engine(database_url)
    create_schema(engine)
    now = datetime.utcnow()
    with session_scope(engine) as session:
        waiting = request_handoff(session, "chat-waiting", "talk_to_human", {"category": "sneakers"}, now=now)
        mine = request_handoff(session, "chat-alice", "complaint", now=now)
        claim(session, mine.id, "alice")
        forgotten = request_handoff(session, "chat-forgotten", "talk_to_human", now=now - timedelta(hours=2))
        create_ticket(session, "chat-old", "sam@example.com", EVIL_SUMMARY, "complaint")
        session.add(VerificationSession(conversation_id="chat-waiting", verified_email="kim@example.com",
                                        verified_at=now, verified_via="email_code", updated_at=now))
        ids = {"waiting": waiting.id, "alice": mine.id, "forgotten": forgotten.id}
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "SHOP_DATABASE_URL": database_url,
        "SHOP_AGENTS": f"alice:{hash_password('alice-pass')},bob:{hash_password('bob-pass')}",
        "RASA_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens there
        "SHOP_HANDOFF_WAIT_SECONDS": "3600",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = workdir / "web.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "web"], cwd=REPO_ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_healthy(base_url, process, log_path)
            yield {"url": base_url, "engine": engine, "ids": ids}
        finally:
            process.terminate()
            process.wait(timeout=10)
            engine.dispose()


def logged_in(console, name: str, password: str) -> requests.Session:
    return agent_session(console["url"], name, password)


def status_of(console, key):
    with session_scope(console["engine"]) as session:
        handoff = session.get(HandoffRequest, console["ids"][key])
        return handoff.status, handoff.agent


def test_the_console_api_refuses_requests_without_an_agent_session(console):
    url = console["url"]
    assert requests.get(f"{url}/console/api/queue", timeout=10).status_code == 401
    claimed = requests.post(f"{url}/console/api/conversations/{console['ids']['waiting']}/claim", timeout=10)
    assert claimed.status_code == 401
    forged = requests.get(f"{url}/console/api/queue", cookies={"shop_console_session": "YWxpY2U.forged"}, timeout=10)
    assert forged.status_code == 401
    page = requests.get(f"{url}/console", allow_redirects=False, timeout=10)
    assert (page.status_code, page.headers["Location"]) == (302, "/console/login")
    assert status_of(console, "waiting") == ("waiting", None)


def test_a_wrong_password_gets_a_clear_message_and_no_session(console):
    response = requests.post(f"{console['url']}/console/login", data={"name": "alice", "password": "guess"},
                             allow_redirects=False, timeout=10)
    assert response.status_code == 401
    assert "don&#39;t match an agent account" in response.text
    assert "shop_console_session" not in response.cookies


def test_the_queue_lists_waiting_active_and_tickets(console):
    queue = logged_in(console, "alice", "alice-pass").get(f"{console['url']}/console/api/queue", timeout=10).json()
    # chat-forgotten may still be listed until the first sweep (see the next test).
    waiting = [h for h in queue["waiting"] if h["conversation_id"] != "chat-forgotten"]
    assert [(h["conversation_id"], h["context"]) for h in waiting] == [("chat-waiting", {"category": "sneakers"})]
    assert [(h["conversation_id"], h["agent"], h["reason"]) for h in queue["active"]] == [
        ("chat-alice", "alice", "complaint")]
    assert [(t["number"], t["email"], t["summary"]) for t in queue["tickets"]] == [
        ("HT-000001", "sam@example.com", EVIL_SUMMARY)]


def test_an_open_chat_shows_what_the_shop_knows_even_when_rasa_is_down(console):
    alice = logged_in(console, "alice", "alice-pass")
    chat = alice.get(f"{console['url']}/console/api/conversations/{console['ids']['waiting']}", timeout=30).json()
    assert (chat["reason"], chat["status"], chat["context"]) == ("talk_to_human", "waiting", {"category": "sneakers"})
    assert chat["shop"] == {"verified email": "kim@example.com"}
    assert chat["transcript"] is None
    assert chat["error"] == "The chat server did not answer; the transcript will reappear."


def test_a_chat_nobody_claimed_in_time_leaves_the_queue(console):
    deadline = time.monotonic() + 15
    while status_of(console, "forgotten")[0] == "waiting" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status_of(console, "forgotten") == ("unanswered", None)


def test_an_agent_cannot_write_in_or_resolve_a_chat_they_did_not_claim(console):
    bob = logged_in(console, "bob", "bob-pass")
    chat = console["ids"]["alice"]
    sent = bob.post(f"{console['url']}/console/api/conversations/{chat}/messages", json={"text": "hi"}, timeout=10)
    assert sent.status_code == 403
    assert "only write in conversations you have claimed" in sent.json()["error"]
    assert bob.post(f"{console['url']}/console/api/conversations/{chat}/resolve", timeout=10).status_code == 403
    again = bob.post(f"{console['url']}/console/api/conversations/{chat}/claim", timeout=10)
    assert (again.status_code, again.json()["error"]) == (409, "This conversation is already active by alice.")
    assert status_of(console, "alice") == ("active", "alice")


def test_an_empty_message_is_refused(console):
    alice = logged_in(console, "alice", "alice-pass")
    sent = alice.post(f"{console['url']}/console/api/conversations/{console['ids']['alice']}/messages",
                      json={"text": "   "}, timeout=10)
    assert (sent.status_code, sent.json()["error"]) == (400, "Type a message first.")


def test_when_rasa_is_down_a_claim_is_undone_and_the_chat_keeps_waiting(console):
    alice = logged_in(console, "alice", "alice-pass")
    claimed = alice.post(f"{console['url']}/console/api/conversations/{console['ids']['waiting']}/claim", timeout=30)
    assert claimed.status_code == 502
    assert "nothing was changed" in claimed.json()["error"]
    assert status_of(console, "waiting") == ("waiting", None)


def test_the_console_page_shows_messages_and_tickets_as_text(console):
    dialogs = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"{console['url']}/console")
            page.fill("#agent-name", "alice")
            page.fill("#agent-password", "alice-pass")
            page.click("button[type=submit]")
            expect(page.locator("#agent-name")).to_have_text("alice")
            expect(page.locator("#queue-tickets li")).to_have_text(f"HT-000001 - sam@example.com - {EVIL_SUMMARY}")
            expect(page.locator("#queue-waiting li")).to_contain_text("talk to human - chat chat-waiti")
        finally:
            browser.close()
    assert dialogs == []
