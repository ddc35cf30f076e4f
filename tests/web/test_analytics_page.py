"""The analytics dashboard (web/analytics.py) over real HTTP (`python -m web`) and in headless Chromium.

The shop front reads a real SQLite tracker store laid out like Rasa's (tests/analytics_events.py);
the page copies new events on every load, so adding chats to that file and reloading must change it.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime
from typing import Iterator

import pytest
import requests
import yaml
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from shop.analytics import AnalyticsEvent
from shop.checkout import CheckoutOrder
from shop.db import create_schema, make_engine, session_scope
from shop.handoff import HandoffRequest, hash_password
from shop.models import Cart, Order
from tests.analytics_events import Chat, TrackerStoreFile, utc
from tests.browser import launch_chromium
from tests.web.conftest import REPO_ROOT, _wait_until_healthy, free_port

RANGE = "from=2024-06-01&to=2024-06-07"


def shopping(sender: str, at: datetime) -> Chat:
    return (Chat(sender, at).session_start()
            .turn("hi", "greet", "action_greet")
            .turn("red sneakers", "search_product", "action_search_products"))


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("analytics")
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    engine = make_engine(database_url)
    create_schema(engine)
    tracker = TrackerStoreFile(workdir / "rasa_tracker.db")
    buyer = (shopping("buyer", utc(2024, 6, 3, 10, 0))
             .turn("tell me about the first one", "product_details", "action_product_details")
             .user("add it", "add_to_cart").action("action_add_to_cart").slot("cart_add_status", "added")
             .action("action_listen").turn("checkout", "checkout", "action_start_checkout"))
    lost = (Chat("lost", utc(2024, 6, 4, 9, 0)).session_start().fallback("<b>do you sell gift cards</b>")
            .fallback("gift cards??").slot("handoff_reason", "repeated_fallback").slot("handoff_status", "waiting"))
    tracker.save(buyer, lost, shopping("browser", utc(2024, 6, 4, 12, 0)))
    with session_scope(engine) as session:
        placed = datetime(2024, 6, 3, 10, 5)
        cart = Cart(session_id="buyer", status="checked_out", created_at=placed, updated_at=placed)
        order = Order(number="SH-700001", email="buyer@example.com", status="paid", total_cents=15_050,
                      source="chat", conversation_id="buyer", placed_at=placed, updated_at=placed)
        session.add_all([cart, order])
        session.flush()
        session.add(CheckoutOrder(order_id=order.id, cart_id=cart.id, session_id="buyer", created_at=placed,
                                  stock_taken_at=placed))
        session.add(HandoffRequest(conversation_id="lost", reason="repeated_fallback", status="resolved",
                                   agent="alice", created_at=datetime(2024, 6, 4, 9, 1), rating=4,
                                   rated_at=datetime(2024, 6, 4, 9, 20)))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "SHOP_DATABASE_URL": database_url,
        "ANALYTICS_TRACKER_STORE_URL": tracker.url,
        "SHOP_AGENTS": f"alice:{hash_password('alice-pass')}",
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
            yield {"url": base_url, "engine": engine, "tracker": tracker}
        finally:
            process.terminate()
            process.wait(timeout=10)
            tracker.close()
            engine.dispose()


def agent_session(dashboard) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{dashboard['url']}/console/login", data={"name": "alice", "password": "alice-pass"},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return session


def stored_events(dashboard) -> int:
    with session_scope(dashboard["engine"]) as session:
        return session.execute(select(func.count()).select_from(AnalyticsEvent)).scalar()


@pytest.mark.parametrize("path", ["/console/analytics", "/console/analytics/daily.csv",
                                  "/console/analytics/unanswered.yml"])
def test_the_dashboard_and_its_downloads_need_an_agent_login(dashboard, path):
    response = requests.get(f"{dashboard['url']}{path}?{RANGE}", allow_redirects=False, timeout=10)

    assert response.status_code == 302
    assert response.headers["Location"] == "/console/login"
    forged = requests.get(f"{dashboard['url']}{path}?{RANGE}", cookies={"shop_console_session": "alice.forged"},
                          allow_redirects=False, timeout=10)
    assert forged.status_code == 302


def test_the_page_shows_the_figures_and_charts_in_chromium_and_changes_with_new_chats(dashboard):
    errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{dashboard['url']}/console/login")
            page.fill("input[name=name]", "alice")
            page.fill("input[name=password]", "alice-pass")
            page.click("button[type=submit]")
            page.wait_for_url("**/console")
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{dashboard['url']}/console/analytics?{RANGE}")

            tile = lambda name: page.locator(f'.tile[data-metric="{name}"] .value')  # noqa: E731
            expect(tile("Conversations")).to_have_text("3")
            expect(tile("Resolved by the bot")).to_have_text("67%")
            expect(tile("Handoff rate")).to_have_text("33%")
            expect(tile("Fallback rate")).to_have_text("22%")  # 2 of 9 messages
            expect(tile("CSAT")).to_have_text("4.0 / 5")
            expect(tile("Revenue from chat")).to_have_text("$150.50")
            for chart in ("conversations", "revenue", "funnel", "reasons", "intents"):
                expect(page.locator(f'svg.chart[data-chart="{chart}"]')).to_be_visible()
            conversation_bars = page.locator('svg[data-chart="conversations"] rect.bar')
            expect(conversation_bars).to_have_count(3)  # June 3: resolved; June 4: resolved + handed over
            expect(page.locator('svg[data-chart="revenue"] rect.bar')).to_have_count(1)
            expect(page.locator('svg[data-chart="funnel"] text.count')).to_have_text(
                ["2", "1 (50% of the step before)", "1 (100% of the step before)", "1 (100% of the step before)",
                 "1 (100% of the step before)"])
            expect(page.locator('svg[data-chart="reasons"] text.label')).to_have_text(["repeated fallback"])
            # shoppers' text is shown as text, never as markup
            expect(page.locator("#unanswered tbody td:first-child")).to_have_text(
                ["<b>do you sell gift cards</b>", "gift cards??"])

            with page.expect_download() as download_info:
                page.click("#download-unanswered")
            stub = yaml.safe_load(open(download_info.value.path(), encoding="utf-8"))
            assert [e["text"] for e in stub["nlu"][0]["examples"]] == ["<b>do you sell gift cards</b>", "gift cards??"]
            with page.expect_download() as download_info:
                page.click(".downloads a:text('daily')")
            rows = list(csv.DictReader(open(download_info.value.path(), encoding="utf-8")))
            assert [(r["day"], r["conversations"], r["revenue_cents"]) for r in rows[2:4]] == [
                ("2024-06-03", "1", "15050"), ("2024-06-04", "2", "0")]

            dashboard["tracker"].save(shopping("newcomer", utc(2024, 6, 6, 15, 0)),
                                      Chat("late", utc(2024, 6, 6, 16, 0)).session_start()
                                      .user("I want a person", "talk_to_human").handoff("talk_to_human"))
            page.reload()

            expect(tile("Conversations")).to_have_text("5")
            expect(tile("Handoff rate")).to_have_text("40%")
            expect(conversation_bars).to_have_count(5)
            expect(page.locator('svg[data-chart="reasons"] text.label')).to_have_text(
                ["repeated fallback", "talk to human"])
            expect(page.locator("#daily tbody tr").nth(1).locator("td").nth(1)).to_have_text("2")  # June 6
        finally:
            browser.close()
    assert errors == []


def test_every_table_downloads_as_csv_and_the_figures_match_the_database(dashboard):
    session = agent_session(dashboard)
    page = session.get(f"{dashboard['url']}/console/analytics?{RANGE}", timeout=30)
    links = sorted(set(part.split("?")[0] for part in page.text.split('href="/console/analytics/')[1:]
                       if part.split("?")[0].endswith(".csv")))
    assert links == ["daily.csv", "funnel.csv", "handoff_reasons.csv", "leads_by_stage.csv", "summary.csv",
                     "top_intents.csv", "unanswered_messages.csv"]
    for link in links:
        response = session.get(f"{dashboard['url']}/console/analytics/{link}?{RANGE}", timeout=30)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in response.headers["Content-Disposition"]
    summary = dict(csv.reader(io.StringIO(session.get(
        f"{dashboard['url']}/console/analytics/summary.csv?{RANGE}", timeout=30).text)))
    with session_scope(dashboard["engine"]) as db:
        paid = db.execute(select(func.sum(Order.total_cents)).join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
                          .where(CheckoutOrder.stock_taken_at.is_not(None))).scalar()
    assert summary["revenue_cents"] == str(paid)
    assert summary["from"] == "2024-06-01" and summary["to"] == "2024-06-07"
    missing = session.get(f"{dashboard['url']}/console/analytics/nonsense.csv?{RANGE}", timeout=30)
    assert missing.status_code == 404


@pytest.mark.parametrize("query, message", [
    ("from=2024-06-07&to=2024-06-01", "the range ends (2024-06-01) before it starts (2024-06-07)"),
    ("from=yesterday&to=2024-06-01", "Dates look like 2024-05-31."),
    ("from=2020-01-01&to=2024-06-01", "Choose at most 366 days."),
    ("to=0001-01-03", "the range must start after 0001-01-01"),
])
def test_a_bad_range_gets_a_clear_message_and_copies_nothing(dashboard, query, message):
    session = agent_session(dashboard)
    session.get(f"{dashboard['url']}/console/analytics?{RANGE}", timeout=30)
    dashboard["tracker"].save(shopping(f"unseen-{len(message)}", utc(2024, 6, 7, 8, 0)))
    before = stored_events(dashboard)

    page = session.get(f"{dashboard['url']}/console/analytics?{query}", timeout=30)
    download = session.get(f"{dashboard['url']}/console/analytics/daily.csv?{query}", timeout=30)

    assert page.status_code == 400 and message in page.text.replace("&#39;", "'")
    assert download.status_code == 400 and message in download.text
    assert stored_events(dashboard) == before
