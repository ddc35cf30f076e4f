"""Analytics end to end: real chats with the real Rasa server change the dashboard, which matches the databases.

The stack's shop front copies what Rasa writes to its tracker store in the background (every
ANALYTICS_INGEST_SECONDS, short in tests/e2e/conftest.py). Here shoppers search, get lost, rate the chat,
and one leaves a cart, gets the worker's reminder, checks out with its code and pays. Other e2e tests
share the stack, so figures are compared before and after this test's own chats, and each figure is
checked against the tracker store or the shop database it comes from.
"""
import csv
import io
import re
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone

import requests
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from shop.checkout import CheckoutOrder
from shop.db import session_scope
from shop.handoff import HandoffRequest
from shop.models import Cart, Feedback, Lead, Order
from shop.reminders import CartReminder
from tests.analytics_events import wait_until_copied
from tests.browser import launch_chromium
from tests.console_login import agent_session, log_in_page
from tests.e2e.chat import ask, check_out_and_pay, reply_text, start_worker, wait_until
from tests.e2e.conftest import AGENT_NAME, AGENT_PASSWORD
from tests.e2e.test_cart_recovery import in_stock_variant, report_today
from tests.e2e.test_rest import say
from tests.e2e.test_socketio import WebChatClient

SHOWS_WITHIN_SECONDS = 90  # the copy interval, with room for Rasa and the shop front on two busy cores


def tracker_url(stack) -> str:
    return f"sqlite:///{stack.workdir / 'tracker.db'}"


def table(agent: requests.Session, stack, name: str, today: str) -> list:
    response = agent.get(f"{stack.web_url}/console/analytics/{name}.csv?from={today}&to={today}", timeout=60)
    response.raise_for_status()
    return list(csv.reader(io.StringIO(response.text)))[1:]


def figures(agent: requests.Session, stack, today: str) -> dict:
    """Today's summary, funnel and leads as the dashboard's CSV downloads give them."""
    found = {name: value for name, value in table(agent, stack, "summary", today)}
    found.update({f"funnel {step}": n for step, n, _ in table(agent, stack, "funnel", today)})
    found.update({f"leads {stage}": n for stage, n in table(agent, stack, "leads_by_stage", today)})
    return found


def changed(before: dict, after: dict, name: str) -> int:
    return int(after[name]) - int(before[name])


def tracker_counts(stack, senders, today: str) -> dict:
    """Straight from Rasa's tracker store: shoppers with a message today, and these senders' messages and
    messages classified nlu_fallback (what the shop triggers itself, "EXTERNAL: ...", is no message)."""
    midnight = datetime.fromisoformat(today).replace(tzinfo=timezone.utc).timestamp()
    marks = ", ".join("?" for _ in senders)
    shopper_message = "type_name = 'user' AND json_extract(data, '$.text') NOT LIKE 'EXTERNAL: %'"
    with sqlite3.connect(stack.workdir / "tracker.db") as connection:
        shoppers = connection.execute(
            f"SELECT COUNT(DISTINCT sender_id) FROM events WHERE {shopper_message} AND timestamp >= ?",
            (midnight,)).fetchone()[0]
        messages, fallbacks = connection.execute(
            f"SELECT COUNT(*), SUM(intent_name = 'nlu_fallback') FROM events WHERE {shopper_message} "
            f"AND sender_id IN ({marks})", list(senders)).fetchone()
    return {"shoppers": shoppers, "messages": messages, "fallbacks": fallbacks or 0}


def shop_counts(engine, today: str) -> dict:
    """Straight from the shop database: today's ratings (survey and agent), leads by stage, reminders."""
    start = datetime.fromisoformat(today)
    end = start + timedelta(days=1)
    with session_scope(engine) as session:
        stars = list(session.execute(select(Feedback.rating).where(
            Feedback.rating.is_not(None), Feedback.created_at >= start, Feedback.created_at < end)).scalars())
        stars += list(session.execute(select(HandoffRequest.rating).where(
            HandoffRequest.rating.is_not(None), HandoffRequest.rated_at >= start,
            HandoffRequest.rated_at < end)).scalars())
        leads = dict(session.execute(select(Lead.stage, func.count()).where(
            Lead.created_at >= start, Lead.created_at < end).group_by(Lead.stage)).all())
        sent = session.execute(select(func.count()).select_from(CartReminder).where(
            CartReminder.sent_at >= start, CartReminder.sent_at < end)).scalar()
    return {"ratings": len(stars), "csat": round(sum(stars) / len(stars), 2) if stars else None,
            "leads": leads, "reminders_sent": sent}


def recovered_order(engine, sender: str):
    """(order total, recovered cents) once the sender's cart is credited as recovered, else None."""
    with session_scope(engine) as session:
        return session.execute(
            select(Order.total_cents, CartReminder.recovered_cents)
            .join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
            .join(CartReminder, CartReminder.recovered_order_id == Order.id)
            .join(Cart, Cart.id == CartReminder.cart_id)
            .where(Cart.session_id == sender, CartReminder.status == "recovered")).first()


def recover_a_cart(stack, sender: str) -> int:
    """A socket.io shopper leaves a cart, the worker reminds them, they check out with the code and pay; the
    order's total once the cart counts as recovered."""
    engine = stack.engine()
    handle, title, color, size = in_stock_variant(engine)
    chat = WebChatClient(stack.rasa_url, sender)
    worker = start_worker(stack, "worker-analytics.log")
    try:
        chat.say(f'/add_to_cart{{"product_handle": "{handle}", "color": "{color}", "size": "{size}"}}')
        assert f"Added 1 x {title}" in reply_text(chat, "to your cart")
        code = re.search(r'say "apply ([A-Z0-9-]+)"', reply_text(chat, "You left these in your cart")).group(1)
        ask(chat, f"apply {code}", f"{code} applied")
        check_out_and_pay(chat, "Kim Analytics", "kim.analytics.e2e@example.com")
        total, recovered = wait_until(lambda: recovered_order(engine, sender), "the cart credited as recovered")
    finally:
        chat.close()
        worker.stop()
    assert recovered == total
    return total


def bar_total(page, chart: str) -> int:
    """The sum of a column chart's bars, read from their tooltips ("Wed 05 Jun: 3 ...")."""
    titles = page.locator(f'svg[data-chart="{chart}"] rect.bar title').all_text_contents()
    return sum(int(re.search(r": (\d+) ", title).group(1)) for title in titles)


def reload_until_shown(page, locator, text: str) -> None:
    """Reload the page until `locator` reads `text`: the background copy runs every few seconds."""
    end = time.monotonic() + SHOWS_WITHIN_SECONDS
    while locator.inner_text().strip() != text:
        assert time.monotonic() < end, f"the dashboard still shows {locator.inner_text()!r}, not {text!r}"
        page.wait_for_timeout(500)
        page.reload()


def test_real_chats_change_the_dashboard_and_match_the_databases(stack):
    engine = stack.engine()
    today = datetime.utcnow().date().isoformat()
    agent = agent_session(stack.web_url, AGENT_NAME, AGENT_PASSWORD)
    wait_until_copied(engine, tracker_url(stack), SHOWS_WITHIN_SECONDS)
    before = figures(agent, stack, today)
    shoppers_before = tracker_counts(stack, ["nobody"], today)["shoppers"]

    searcher, lost, rater, returner = (f"analytics-{role}-{uuid.uuid4().hex[:6]}"
                                       for role in ("searcher", "lost", "rater", "returner"))
    say(stack, searcher, "hello")
    say(stack, searcher, "show me red sneakers under 80 dollars")
    # What the NLU says for a message it can't place, for sure: a retrained model may read gibberish as
    # `inform`, which searches the catalog and would move the funnel.
    say(stack, lost, "/nlu_fallback")
    say(stack, lost, "/nlu_fallback")
    say(stack, rater, '/give_feedback{"feedback_rating": "4"}')  # the survey's 4-star button
    total = recover_a_cart(stack, returner)
    wait_until_copied(engine, tracker_url(stack), SHOWS_WITHIN_SECONDS)
    wait_until(lambda: int(figures(agent, stack, today)["carts_recovered"]) > int(before["carts_recovered"]),
               "the recovered cart on the dashboard", SHOWS_WITHIN_SECONDS)
    after = figures(agent, stack, today)

    from_tracker = tracker_counts(stack, [searcher, lost, rater, returner], today)
    assert changed(before, after, "conversations") == 4
    assert changed(before, after, "active_shoppers") == 4 == from_tracker["shoppers"] - shoppers_before
    assert changed(before, after, "shopper_messages") == from_tracker["messages"] >= 13
    assert changed(before, after, "fallback_messages") == from_tracker["fallbacks"] >= 1
    assert changed(before, after, "funnel search") == 2  # the searcher and the returner (add to cart and on)
    assert changed(before, after, "funnel paid") == 1
    assert changed(before, after, "chat_orders_paid") == 1
    assert changed(before, after, "revenue_cents") == total
    assert changed(before, after, "carts_recovered") == 1
    assert changed(before, after, "revenue_recovered_cents") == total
    assert changed(before, after, "ratings") >= 1
    # the same figures as the daily report and the shop's own tables
    report = report_today(stack)
    assert int(after["carts_recovered"]) == int(report["carts_recovered"])
    assert int(after["revenue_recovered_cents"]) == round(float(report["revenue_recovered"]) * 100)
    from_shop = shop_counts(engine, today)
    assert int(after["cart_reminders_sent"]) == from_shop["reminders_sent"] == int(report["reminders_sent"])
    assert (int(after["ratings"]), after["csat_average"]) == (from_shop["ratings"], str(from_shop["csat"]))
    assert {name[6:]: int(n) for name, n in after.items() if name.startswith("leads ") and n != "0"} == \
        from_shop["leads"]

    errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in_page(page, stack.web_url, AGENT_NAME, AGENT_PASSWORD)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"{stack.web_url}/console/analytics?from={today}&to={today}")
            tile = lambda name: page.locator(f'.tile[data-metric="{name}"] .value')  # noqa: E731
            expect(tile("Conversations")).to_have_text(after["conversations"])
            expect(tile("Carts recovered")).to_have_text(after["carts_recovered"])
            expect(tile("CSAT")).to_have_text(f"{from_shop['csat']:.1f} / 5")
            assert bar_total(page, "conversations") == int(after["conversations"])
            assert bar_total(page, "recovered") == int(after["carts_recovered"])

            say(stack, f"analytics-newcomer-{uuid.uuid4().hex[:6]}", "hi there")
            reload_until_shown(page, tile("Conversations"), str(int(after["conversations"]) + 1))
            assert bar_total(page, "conversations") == int(after["conversations"]) + 1
        finally:
            browser.close()
    assert errors == []
