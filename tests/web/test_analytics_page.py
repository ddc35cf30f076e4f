"""The analytics dashboard (web/analytics.py) over real HTTP (`python -m web`) and in headless Chromium.

The shop front reads a real SQLite tracker store laid out like Rasa's (tests/analytics_events.py) and
copies its new events in the background every ANALYTICS_INGEST_SECONDS (1 s here); the page only reads.
So adding chats to that file must change the page once the copy has run, and a server that copies
nothing (ANALYTICS_INGEST_SECONDS=0) must leave the analytics tables as they are, however often the page
is loaded. The shop's own rows (a paid chat order, a recovered cart, leads, ratings) are written by the
shop's own functions.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from shop.analytics import AnalyticsEvent
from shop.checkout import CheckoutOrder
from shop.db import create_schema, make_engine, session_scope
from shop.feedback import record_feedback_rating, start_survey
from shop.handoff import HandoffRequest, hash_password
from shop.leads import LeadAnswers, store_lead
from shop.models import Cart, Lead, Order
from shop.reminders import CartReminder, run_due_reminders
from shop.report import credit_recovered_carts
from tests.analytics_events import EVENTS, Chat, TrackerStoreFile, utc, wait_until_copied
from tests.browser import launch_chromium
from tests.console_login import agent_session, log_in_page
from tests.unit.recovery_helpers import RecordingSender, check_out_and_pay, fill_cart
from tests.unit.service_helpers import catalog
from tests.web.conftest import REPO_ROOT, _wait_until_healthy, free_port

RANGE = "from=2024-06-01&to=2024-06-07"
AGENT, PASSWORD = "alice", "alice-pass"


def shopping(sender: str, at: datetime) -> Chat:
    return (Chat(sender, at).session_start()
            .turn("hi", "greet", "action_greet")
            .turn("red sneakers", "search_product", "action_search_products"))


def add_shop_rows(engine) -> None:
    """A paid chat order, a cart recovered after a reminder, a hot lead and a survey rating, in the week."""
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
        store_lead(session, "bulk", LeadAnswers(
            email="dana@harbor.example", company="Harbor Logistics", role="Head of Operations", quantity=200,
            budget_cents=1_500_000, timeline="within 3 weeks", need="embroidered fleece jackets for our staff"),
            True, "The sales team may contact me.", now=datetime(2024, 6, 5, 9, 0))
        start_survey(session, "buyer", "purchase", now=datetime(2024, 6, 3, 10, 6))
        record_feedback_rating(session, "buyer", "2", now=datetime(2024, 6, 3, 10, 7))
        tee = catalog(session)["tee"].id
    left = datetime(2024, 6, 5, 10, 0)
    fill_cart(engine, "returner", (tee, 2), now=left)
    sender = RecordingSender()
    with session_scope(engine) as session:
        assert run_due_reminders(session, left + timedelta(hours=1), sender) == 1
    [(_, _, entities)] = sender.calls
    check_out_and_pay(engine, "returner", left + timedelta(hours=2), code=entities["discount_code"])
    # the worker's round after that payment, back then
    assert credit_recovered_carts(engine, left + timedelta(hours=3)) == 1


@contextmanager
def shop_front(workdir: Path, database_url: str, tracker_url: str, ingest_seconds: int) -> Iterator[str]:
    """`python -m web` on a free port; its URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "SHOP_DATABASE_URL": database_url,
        "ANALYTICS_TRACKER_STORE_URL": tracker_url, "ANALYTICS_INGEST_SECONDS": str(ingest_seconds),
        "SHOP_AGENTS": f"{AGENT}:{hash_password(PASSWORD)}",
        "RASA_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens there
        "SHOP_HANDOFF_WAIT_SECONDS": "3600",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = workdir / f"web-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "web"], cwd=REPO_ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_healthy(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=10)


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
    add_shop_rows(engine)
    try:
        with shop_front(workdir, database_url, tracker.url, ingest_seconds=1) as url:
            yield {"url": url, "engine": engine, "tracker": tracker, "workdir": workdir, "database_url": database_url}
    finally:
        tracker.close()
        engine.dispose()


def agent(dashboard) -> requests.Session:
    return agent_session(dashboard["url"], AGENT, PASSWORD)


def stored_events(dashboard) -> int:
    with session_scope(dashboard["engine"]) as session:
        return session.execute(select(func.count()).select_from(AnalyticsEvent)).scalar() or 0


def tracker_rows(dashboard) -> tuple:
    """(how many events, the newest id) in the tracker store."""
    with dashboard["tracker"].engine.connect() as connection:
        return tuple(connection.execute(select(func.count(), func.max(EVENTS.c.id))).one())


def wait_for_the_copy(dashboard) -> None:
    wait_until_copied(dashboard["engine"], dashboard["tracker"].url)


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
    wait_for_the_copy(dashboard)
    with session_scope(dashboard["engine"]) as db:
        returner_total = db.execute(select(CartReminder.recovered_cents)
                                    .where(CartReminder.status == "recovered")).scalar_one()
    errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in_page(page, dashboard["url"], AGENT, PASSWORD)
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{dashboard['url']}/console/analytics?{RANGE}")

            tile = lambda name: page.locator(f'.tile[data-metric="{name}"]')  # noqa: E731
            expect(tile("Conversations").locator(".value")).to_have_text("3")
            expect(tile("Resolved by the bot").locator(".value")).to_have_text("67%")
            expect(tile("Handoff rate").locator(".value")).to_have_text("33%")
            expect(tile("Fallback rate").locator(".value")).to_have_text("22%")  # 2 of 9 messages
            expect(tile("CSAT").locator(".value")).to_have_text("3.0 / 5")  # the agent's 4, the survey's 2
            expect(tile("Revenue from chat").locator(".value")).to_have_text(
                f"${(15_050 + returner_total) / 100:,.2f}")
            expect(tile("Carts recovered").locator(".value")).to_have_text("1")
            expect(tile("Carts recovered").locator(".detail")).to_have_text(
                f"${returner_total / 100:,.2f}; 1 reminder sent")
            expect(page.locator("#analytics-note")).to_contain_text("new ones show within 1 s")
            for chart in ("conversations", "revenue", "recovered", "funnel", "reasons", "intents", "leads"):
                expect(page.locator(f'svg.chart[data-chart="{chart}"]')).to_be_visible()
            conversation_bars = page.locator('svg[data-chart="conversations"] rect.bar')
            expect(conversation_bars).to_have_count(3)  # June 3: resolved; June 4: resolved + handed over
            expect(page.locator('svg[data-chart="revenue"] rect.bar')).to_have_count(2)  # June 3 and June 5
            expect(page.locator('svg[data-chart="recovered"] rect.bar title')).to_have_text(
                ["Wed 05 Jun: 1 carts recovered"])
            expect(page.locator('svg[data-chart="leads"] text.count')).to_have_text(["1", "0", "0"])
            expect(page.locator('svg[data-chart="funnel"] text.count')).to_have_text(
                ["2", "1 (50% of the step before)", "1 (100% of the step before)", "1 (100% of the step before)",
                 "1 (100% of the step before)"])
            expect(page.locator('svg[data-chart="reasons"] text.label')).to_have_text(["repeated fallback"])
            # shoppers' text is shown as text, never as markup
            expect(page.locator("#unanswered tbody td:first-child")).to_have_text(
                ["<b>do you sell gift cards</b>", "gift cards??"])
            june5 = page.locator("#daily tbody tr").nth(2).locator("td")  # newest first: 7, 6, 5 June
            expect(june5.nth(0)).to_have_text("2024-06-05")
            expect(june5.nth(10)).to_have_text("1")  # carts recovered

            with page.expect_download() as download_info:
                page.click("#download-unanswered")
            stub = yaml.safe_load(open(download_info.value.path(), encoding="utf-8"))
            assert [e["text"] for e in stub["nlu"][0]["examples"]] == ["<b>do you sell gift cards</b>", "gift cards??"]
            with page.expect_download() as download_info:
                page.click(".downloads a:text('daily')")
            rows = list(csv.DictReader(open(download_info.value.path(), encoding="utf-8")))
            assert [(r["day"], r["conversations"], r["revenue_cents"], r["carts_recovered"]) for r in rows[2:5]] == [
                ("2024-06-03", "1", "15050", "0"), ("2024-06-04", "2", "0", "0"),
                ("2024-06-05", "0", str(returner_total), "1")]

            dashboard["tracker"].save(shopping("newcomer", utc(2024, 6, 6, 15, 0)),
                                      Chat("late", utc(2024, 6, 6, 16, 0)).session_start()
                                      .user("I want a person", "talk_to_human").handoff("talk_to_human"))
            page.reload()  # the page reads what was copied: nothing new until the next copy
            expect(tile("Conversations").locator(".value")).to_have_text("3")
            wait_for_the_copy(dashboard)
            page.reload()

            expect(tile("Conversations").locator(".value")).to_have_text("5")
            expect(tile("Handoff rate").locator(".value")).to_have_text("40%")
            expect(conversation_bars).to_have_count(5)
            expect(page.locator('svg[data-chart="reasons"] text.label')).to_have_text(
                ["repeated fallback", "talk to human"])
            expect(page.locator("#daily tbody tr").nth(1).locator("td").nth(1)).to_have_text("2")  # June 6
        finally:
            browser.close()
    assert errors == []
    # copied every second since, never twice
    assert stored_events(dashboard) == tracker_rows(dashboard)[0]


def test_every_table_downloads_as_csv_and_the_figures_match_the_database(dashboard):
    wait_for_the_copy(dashboard)
    session = agent(dashboard)
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
    leads = dict(list(csv.reader(io.StringIO(session.get(
        f"{dashboard['url']}/console/analytics/leads_by_stage.csv?{RANGE}", timeout=30).text)))[1:])
    with session_scope(dashboard["engine"]) as db:
        paid = db.execute(select(func.sum(Order.total_cents)).join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
                          .where(CheckoutOrder.stock_taken_at.is_not(None))).scalar()
        recovered = db.execute(select(func.count(), func.sum(CartReminder.recovered_cents))
                               .where(CartReminder.status == "recovered")).one()
        sent = db.execute(select(func.count()).select_from(CartReminder)
                          .where(CartReminder.sent_at.is_not(None))).scalar()
        lead_stages = dict(db.execute(select(Lead.stage, func.count()).group_by(Lead.stage)).all())
    assert summary["revenue_cents"] == str(paid)
    assert (summary["carts_recovered"], summary["revenue_recovered_cents"]) == tuple(str(n) for n in recovered)
    assert summary["cart_reminders_sent"] == str(sent)
    assert {stage: int(n) for stage, n in leads.items() if n != "0"} == lead_stages
    assert summary["from"] == "2024-06-01" and summary["to"] == "2024-06-07"
    missing = session.get(f"{dashboard['url']}/console/analytics/nonsense.csv?{RANGE}", timeout=30)
    assert missing.status_code == 404


@pytest.mark.parametrize("query, message", [
    ("from=2024-06-07&to=2024-06-01", "the range ends (2024-06-01) before it starts (2024-06-07)"),
    ("from=yesterday&to=2024-06-01", "Dates look like 2024-05-31."),
    ("from=2020-01-01&to=2024-06-01", "Choose at most 366 days."),
    ("to=0001-01-03", "the range must start after 0001-01-01"),
])
def test_a_bad_range_gets_a_clear_message(dashboard, query, message):
    session = agent(dashboard)

    page = session.get(f"{dashboard['url']}/console/analytics?{query}", timeout=30)
    download = session.get(f"{dashboard['url']}/console/analytics/daily.csv?{query}", timeout=30)

    assert page.status_code == 400 and message in page.text.replace("&#39;", "'")
    assert download.status_code == 400 and message in download.text


def test_the_page_only_reads_a_server_that_copies_nothing_stores_no_event(dashboard):
    unseen = TrackerStoreFile(dashboard["workdir"] / "unseen_tracker.db")
    try:
        unseen.save(shopping("unseen", utc(2024, 6, 7, 8, 0)))
        with shop_front(dashboard["workdir"], dashboard["database_url"], unseen.url, ingest_seconds=0) as reader:
            session = agent_session(reader, AGENT, PASSWORD)
            pages = [session.get(f"{reader}/console/analytics?{RANGE}", timeout=30) for _ in range(3)]
            download = session.get(f"{reader}/console/analytics/daily.csv?{RANGE}", timeout=30)
    finally:
        unseen.close()

    assert [page.status_code for page in pages] + [download.status_code] == [200, 200, 200, 200]
    assert "does not copy conversation events (ANALYTICS_INGEST_SECONDS=0)" in pages[-1].text
    with session_scope(dashboard["engine"]) as db:
        assert db.execute(select(func.count()).select_from(AnalyticsEvent)
                          .where(AnalyticsEvent.sender_id == "unseen")).scalar() == 0
