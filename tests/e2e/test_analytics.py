"""Analytics end to end: real chats with the real Rasa server change the dashboard, which matches the databases.

A second shop front is started on the stack's shop database and pointed at the stack's tracker store
(ANALYTICS_TRACKER_STORE_URL), so the page reads what Rasa really wrote. Other e2e tests share the
stack, so figures are compared before and after this test's own chats.
"""
import csv
import io
import re
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from ops.servers import BIN, Server, free_port
from shop.handoff import hash_password
from tests.browser import launch_chromium
from tests.e2e.conftest import AGENT_NAME, AGENT_PASSWORD
from tests.e2e.test_rest import say


@pytest.fixture(scope="module")
def dashboard_url(stack):
    port = free_port()
    server = Server("analytics front", [str(BIN / "python"), "-m", "web"], {
        "SHOP_DATABASE_URL": stack.database_url, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port),
        "ANALYTICS_TRACKER_STORE_URL": f"sqlite:///{stack.workdir / 'tracker.db'}",
        "SHOP_AGENTS": f"{AGENT_NAME}:{hash_password(AGENT_PASSWORD)}", "RASA_URL": stack.rasa_url,
        "SHOP_HANDOFF_WAIT_SECONDS": "600",
    }, stack.workdir / "analytics-web.log")
    try:
        server.wait_until_ready(f"http://127.0.0.1:{port}/healthz", lambda r: r.ok, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def summary(agent: requests.Session, url: str, today: str) -> dict:
    response = agent.get(f"{url}/console/analytics/summary.csv?from={today}&to={today}", timeout=60)
    response.raise_for_status()
    return {name: value for name, value in csv.reader(io.StringIO(response.text))}


def shoppers_in_tracker(stack, today: str) -> int:
    """Senders with at least one real shopper message today, straight from Rasa's tracker store."""
    midnight = datetime.fromisoformat(today).replace(tzinfo=timezone.utc).timestamp()
    with sqlite3.connect(stack.workdir / "tracker.db") as connection:
        rows = connection.execute(
            "SELECT DISTINCT sender_id FROM events WHERE type_name = 'user' AND timestamp >= ? "
            "AND json_extract(data, '$.text') NOT LIKE 'EXTERNAL: %'", (midnight,),
        ).fetchall()
    return len(rows)


def fallbacks_in_tracker(stack, senders) -> int:
    """Messages of these senders that Rasa's NLU classified nlu_fallback, as the tracker store records them."""
    with sqlite3.connect(stack.workdir / "tracker.db") as connection:
        return connection.execute(
            f"SELECT COUNT(*) FROM events WHERE type_name = 'user' AND intent_name = 'nlu_fallback' "
            f"AND sender_id IN ({', '.join('?' for _ in senders)})", list(senders)).fetchone()[0]


def test_real_chats_change_the_dashboard_and_match_the_databases(stack, dashboard_url):
    today = datetime.utcnow().date().isoformat()
    agent = requests.Session()
    login = agent.post(f"{dashboard_url}/console/login", data={"name": AGENT_NAME, "password": AGENT_PASSWORD},
                       allow_redirects=False, timeout=10)
    assert login.status_code == 302
    before = summary(agent, dashboard_url, today)
    shoppers_before = shoppers_in_tracker(stack, today)

    searcher, lost = f"analytics-{uuid.uuid4().hex[:8]}", f"analytics-{uuid.uuid4().hex[:8]}"
    say(stack, searcher, "hello")
    say(stack, searcher, "show me red sneakers under 80 dollars")
    say(stack, lost, "qwpoeiru zxmvnb")
    say(stack, lost, "/nlu_fallback")  # what the NLU says for a message it can't place, for sure

    after = summary(agent, dashboard_url, today)
    assert int(after["conversations"]) == int(before["conversations"]) + 2
    assert int(after["active_shoppers"]) == int(before["active_shoppers"]) + 2
    assert int(after["shopper_messages"]) == int(before["shopper_messages"]) + 4
    assert shoppers_in_tracker(stack, today) - shoppers_before == 2
    not_understood = fallbacks_in_tracker(stack, [searcher, lost])
    assert not_understood >= 1
    assert int(after["fallback_messages"]) == int(before["fallback_messages"]) + not_understood

    errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{dashboard_url}/console/login")
            page.fill("input[name=name]", AGENT_NAME)
            page.fill("input[name=password]", AGENT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console")
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"{dashboard_url}/console/analytics?from={today}&to={today}")
            tile = page.locator('.tile[data-metric="Conversations"] .value')
            expect(tile).to_have_text(after["conversations"])
            bar_titles = page.locator('svg[data-chart="conversations"] rect.bar title').all_text_contents()
            assert sum(int(re.search(r": (\d+) ", t).group(1)) for t in bar_titles) == int(after["conversations"])

            say(stack, f"analytics-{uuid.uuid4().hex[:8]}", "hi there")
            page.reload()
            expect(tile).to_have_text(str(int(after["conversations"]) + 1))
            bar_titles = page.locator('svg[data-chart="conversations"] rect.bar title').all_text_contents()
            assert sum(int(re.search(r": (\d+) ", t).group(1)) for t in bar_titles) == int(after["conversations"]) + 1
        finally:
            browser.close()
    assert errors == []
