"""Conversation analytics (shop/analytics.py): the pipeline and every metric over hand-made conversations.

Each test writes Rasa-shaped events into a real SQLite tracker store file (tests/analytics_events.py),
runs the pipeline into the shop database (SQLite and PostgreSQL) and reads the report.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest
import yaml
from sqlalchemy import func, inspect, select

from shop.analytics import (
    AnalyticsCursor,
    AnalyticsError,
    AnalyticsEvent,
    DateRange,
    build_report,
    ingest_broker_event,
    ingest_interval_seconds,
    refresh,
    sync_from_tracker_store,
    tracker_store_url,
    unanswered_nlu_stub,
)
from shop.checkout import CheckoutOrder
from shop.db import create_schema, make_engine, session_scope
from shop.feedback import record_feedback_rating, start_survey
from shop.handoff import claim, record_rating, request_handoff, resolve
from shop.leads import LeadAnswers, store_lead
from shop.models import Cart, Lead, Order
from shop.reminders import run_due_reminders
from shop.report import build_daily_report
from tests.analytics_events import Chat, TrackerStore, TrackerStoreFile, utc
from tests.unit.conftest import REPO_ROOT, postgres_schema, postgres_url_for_schema
from tests.unit.recovery_helpers import (DELAY, RecordingSender, check_out_and_pay, fill_cart,
                                         use_reminder_settings)
from tests.unit.service_helpers import catalog

DAY = date(2024, 6, 3)
WEEK = DateRange(date(2024, 6, 1), date(2024, 6, 7))


@pytest.fixture
def tracker(tmp_path):
    store = TrackerStoreFile(tmp_path / "rasa_tracker.db")
    yield store
    store.close()


def stored_events(engine) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(AnalyticsEvent)).scalar()


def report_after_sync(engine, tracker, period=WEEK):
    sync_from_tracker_store(engine, tracker.url)
    return build_report(engine, period)


def searching_chat(sender: str, at: datetime) -> Chat:
    return (Chat(sender, at).session_start()
            .turn("hi", "greet", "action_greet")
            .turn("red sneakers under 80", "search_product", "action_search_products"))


# ----------------------------------------------------------------------------- the pipeline


def test_re_running_the_pipeline_never_double_counts_and_picks_up_new_events(engine, tracker):
    first = searching_chat("ana", utc(2024, 6, 3, 10, 0))
    tracker.save(first)

    result = sync_from_tracker_store(engine, tracker.url)
    assert (result.read, result.added, result.high_water_mark) == (11, 11, 11)
    again = sync_from_tracker_store(engine, tracker.url)
    assert (again.read, again.added, again.rechecked) == (0, 0, 11)  # the window below the mark, read again
    assert stored_events(engine) == 11
    assert build_report(engine, WEEK).conversations == 1

    later = Chat("ana", utc(2024, 6, 3, 10, 5)).turn("thanks", "thank", "utter_thank")
    tracker.save(later, searching_chat("ben", utc(2024, 6, 3, 11, 0)))
    result = sync_from_tracker_store(engine, tracker.url)
    assert (result.read, result.added, result.high_water_mark) == (15, 15, 26)

    report = build_report(engine, WEEK)
    assert (report.conversations, report.messages) == (2, 5)
    with session_scope(engine) as session:
        assert session.get(AnalyticsCursor, "tracker_store").last_event_id == 26


def test_a_tracker_store_that_starts_over_is_read_again_without_double_counting(engine, tmp_path):
    old = TrackerStoreFile(tmp_path / "old.db")
    old.save(searching_chat("ana", utc(2024, 6, 3, 10, 0)), searching_chat("ben", utc(2024, 6, 3, 11, 0)))
    sync_from_tracker_store(engine, old.url)
    old.close()
    fresh = TrackerStoreFile(tmp_path / "fresh.db")
    fresh.save(searching_chat("cleo", utc(2024, 6, 4, 9, 0)))

    result = sync_from_tracker_store(engine, fresh.url)
    fresh.close()

    assert result.added == 11 and result.high_water_mark == 11
    assert build_report(engine, WEEK).conversations == 3


def test_a_turn_that_commits_after_a_later_one_on_postgresql_is_still_copied(engine):
    """PostgreSQL numbers the rows of a transaction when they are inserted and shows them when it commits."""
    with postgres_schema() as schema:
        tracker = TrackerStore(postgres_url_for_schema(schema))
        try:
            with tracker.engine.connect() as slow:
                slow_turn = slow.begin()
                tracker.save(searching_chat("slow", utc(2024, 6, 3, 10, 0)), connection=slow)  # ids 1-11
                tracker.save(searching_chat("quick", utc(2024, 6, 3, 10, 0)))  # ids 12-22, committed first
                before = sync_from_tracker_store(engine, tracker.url)
                slow_turn.commit()
            after = sync_from_tracker_store(engine, tracker.url)
            again = sync_from_tracker_store(engine, tracker.url)
        finally:
            tracker.close()

    assert (before.read, before.added, before.high_water_mark) == (11, 11, 22)
    assert (after.read, after.added, after.rechecked, after.high_water_mark) == (0, 11, 22, 22)
    assert (again.added, again.rechecked) == (0, 22)
    assert stored_events(engine) == 22
    assert build_report(engine, WEEK).conversations == 2


def test_the_ingest_interval_comes_from_the_environment_and_bad_values_are_refused():
    assert ingest_interval_seconds({}) == 15
    assert ingest_interval_seconds({"ANALYTICS_INGEST_SECONDS": " 2 "}) == 2
    assert ingest_interval_seconds({"ANALYTICS_INGEST_SECONDS": "0"}) == 0
    for bad in ("-1", "soon", "1.5"):
        with pytest.raises(AnalyticsError, match="ANALYTICS_INGEST_SECONDS must be a whole number"):
            ingest_interval_seconds({"ANALYTICS_INGEST_SECONDS": bad})


def test_without_a_tracker_store_the_pipeline_says_so_and_creates_nothing(engine, tmp_path):
    missing = tmp_path / "nowhere" / "rasa_tracker.db"

    result = sync_from_tracker_store(engine, f"sqlite:///{missing}")

    assert result.added == 0 and "no tracker store" in result.note
    assert not missing.exists() and not missing.parent.exists()


def test_the_tracker_store_url_follows_the_profile():
    assert tracker_store_url({}) == f"sqlite:///{REPO_ROOT / 'var' / 'rasa_tracker.db'}"
    assert tracker_store_url({"ANALYTICS_TRACKER_STORE_URL": "sqlite:////data/t.db",
                              "SHOP_PROFILE": "production"}) == "sqlite:////data/t.db"
    assert tracker_store_url({"SHOP_PROFILE": "production"}) == \
        "postgresql+psycopg2://postgres@127.0.0.1:5432/rasa_tracker"
    assert tracker_store_url({"SHOP_PROFILE": "production", "TRACKER_DB_HOST": "db", "TRACKER_DB_PORT": "6543",
                              "TRACKER_DB_USER": "rasa", "TRACKER_DB_PASSWORD": "p@ss/word",
                              "TRACKER_DB_NAME": "convs"}) == "postgresql+psycopg2://rasa:p%40ss%2Fword@db:6543/convs"
    with pytest.raises(AnalyticsError, match="TRACKER_DB_PORT"):
        tracker_store_url({"SHOP_PROFILE": "production", "TRACKER_DB_PORT": "abc"})


def test_broker_events_and_tracker_events_of_the_same_message_are_stored_once(engine, tracker):
    chat = searching_chat("ana", utc(2024, 6, 3, 10, 0))
    published = [json.dumps({"sender_id": "ana", **event}) for event in chat.events]

    assert all(ingest_broker_event(engine, body) for body in published[:6])
    assert not ingest_broker_event(engine, published[0])  # redelivered by the broker
    tracker.save(chat)
    result = sync_from_tracker_store(engine, tracker.url)

    assert (result.read, result.added) == (11, 5)
    report = build_report(engine, WEEK)
    assert (report.conversations, report.messages, report.funnel[0][1]) == (1, 2, 1)


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ({"event": "user", "timestamp": 1717400000.0}, "no sender_id"),
    ({"sender_id": "ana", "timestamp": 1717400000.0}, "no event type"),
    ({"sender_id": "ana", "event": "user", "timestamp": "yesterday"}, "no valid timestamp"),
])
def test_a_malformed_broker_message_is_refused_and_stores_nothing(engine, body, message):
    with pytest.raises(AnalyticsError, match=message):
        ingest_broker_event(engine, body)
    assert not inspect(engine).has_table("analytics_events") or stored_events(engine) == 0


# ----------------------------------------------------------------------------- conversations and shoppers


def test_conversations_are_sessions_with_a_shopper_message_and_shoppers_are_distinct_senders(engine, tracker):
    ana = searching_chat("ana", utc(2024, 6, 3, 9, 0))
    ana.session_start(after=3 * 3600).turn("show me boots", "search_product", "action_search_products")
    ben = searching_chat("ben", utc(2024, 6, 4, 9, 0))
    widget_opened_only = Chat("cleo", utc(2024, 6, 3, 12, 0)).session_start()
    payment_only = Chat("dan", utc(2024, 6, 3, 12, 0)).external("payment_confirmed").action("action_confirm_payment")
    tracker.save(ana, ben, widget_opened_only, payment_only)

    report = report_after_sync(engine, tracker)

    assert (report.conversations, report.active_shoppers, report.messages) == (3, 2, 5)
    by_day = {row.day: (row.conversations, row.active_shoppers) for row in report.daily}
    assert by_day[date(2024, 6, 3)] == (2, 1)
    assert by_day[date(2024, 6, 4)] == (1, 1)
    assert by_day[date(2024, 6, 5)] == (0, 0)
    assert len(report.daily) == 7


def test_a_conversation_across_midnight_counts_once_on_the_day_it_started(engine, tracker):
    night = (Chat("owl", utc(2024, 6, 3, 23, 58)).session_start()
             .turn("hi", "greet", "action_greet")
             .fallback("asdf qwerty", after=150)  # 00:00:31 on June 4
             .turn("running shoes", "search_product", "action_search_products", after=60))
    tracker.save(night)

    report = report_after_sync(engine, tracker)

    june3, june4 = report.daily[2], report.daily[3]
    assert (june3.day, june3.conversations, june3.messages, june3.fallback_messages) == (date(2024, 6, 3), 1, 3, 1)
    assert (june4.conversations, june4.messages, june4.fallback_messages) == (0, 0, 0)
    assert build_report(engine, DateRange(date(2024, 6, 4), date(2024, 6, 4))).conversations == 0
    assert build_report(engine, DateRange(date(2024, 6, 3), date(2024, 6, 3))).messages == 3


# ----------------------------------------------------------------------------- fallbacks and resolution


def test_fallback_rate_loops_automated_resolution_and_containment(engine, tracker):
    smooth = searching_chat("smooth", utc(2024, 6, 3, 9, 0))
    one_miss = searching_chat("one-miss", utc(2024, 6, 3, 9, 0)).fallback("blorp")
    # misses with an understood message between them are no loop
    apart = (searching_chat("apart", utc(2024, 6, 3, 9, 0)).fallback("zzz")
             .turn("boots", "search_product", "action_search_products").fallback("hmm?"))
    # the fallback's own "No" button (out_of_scope) neither counts nor breaks the run
    loop = (Chat("loop", utc(2024, 6, 3, 9, 0)).session_start().fallback("wat")
            .turn("/out_of_scope", "out_of_scope", "utter_out_of_scope").fallback("wat is dis"))
    core_fallback = (Chat("core", utc(2024, 6, 3, 9, 0)).session_start()
                     .user("can u do my taxes", "search_product", confidence=0.8)
                     .action("action_default_fallback").bot("Sorry").action("action_listen"))
    tracker.save(smooth, one_miss, apart, loop, core_fallback)

    report = report_after_sync(engine, tracker)

    assert report.conversations == 5
    assert report.messages == 2 + 3 + 5 + 3 + 1
    assert report.fallback_messages == 0 + 1 + 2 + 2 + 1
    assert report.fallback_rate == round(6 / 14, 4)
    assert (report.contained, report.containment_rate) == (5, 1.0)
    assert (report.automated, report.automated_resolution_rate) == (4, 0.8)  # all but "loop"
    assert report.daily[2].automated == 4


def test_unanswered_messages_are_grouped_and_button_payloads_left_out(engine, tracker):
    first = (Chat("a", utc(2024, 6, 3, 9, 0)).session_start().fallback("Do you sell  gift cards?")
             .fallback("/handoff_something"))
    second = Chat("b", utc(2024, 6, 4, 9, 0)).session_start().fallback("do you sell gift cards?")
    third = Chat("c", utc(2024, 6, 5, 9, 0)).session_start().fallback("where is the shop")
    tracker.save(first, second, third)

    report = report_after_sync(engine, tracker)

    assert [(text, times) for text, times, _ in report.unanswered] == [
        ("do you sell gift cards?", 2), ("where is the shop", 1)]
    assert report.unanswered[0][2].replace(microsecond=0) == datetime(2024, 6, 4, 9, 0, 2)
    assert report.fallback_messages == 4


def test_the_unanswered_stub_is_rasa_nlu_yaml_with_every_message(engine, tracker):
    tracker.save(Chat("a", utc(2024, 6, 3, 9, 0)).session_start().fallback('say "hi": to me #now')
                 .fallback("wat"), Chat("b", utc(2024, 6, 3, 9, 0)).session_start().fallback("wat"))
    report = report_after_sync(engine, tracker)

    stub = unanswered_nlu_stub(report)

    data = yaml.safe_load(stub)
    assert data["version"] == "3.1"
    [block] = data["nlu"]
    assert block["intent"] == "label_me"
    assert [(e["text"], e["metadata"]["times"]) for e in block["examples"]] == [
        ("wat", 2), ('say "hi": to me #now', 1)]
    empty = yaml.safe_load(unanswered_nlu_stub(build_report(engine, DateRange(date(2024, 7, 1), date(2024, 7, 1)))))
    assert empty["nlu"] == []


# ----------------------------------------------------------------------------- handoffs


def test_a_handoff_that_came_back_to_the_bot_counts_once_with_its_reason(engine, tracker):
    came_back = (searching_chat("back", utc(2024, 6, 3, 14, 0))
                 .user("can I talk to a person", "talk_to_human").handoff("talk_to_human")
                 .pause(after=20).bot("Hi, I'm alice from the team.", agent="alice")
                 .user("my parcel is late", "order_status").bot("Let me check.", agent="alice")
                 .resume(after=60).action("action_handoff_resume").bot("I'm back.").action("action_listen")
                 .turn("show me boots", "search_product", "action_search_products"))
    ticket = (Chat("ticket", utc(2024, 6, 3, 22, 0)).session_start()
              .user("this is a disgrace", "complaint").handoff("complaint", status="unavailable")
              .slot("handoff_status", None))
    looped = (Chat("lost", utc(2024, 6, 4, 10, 0)).session_start().fallback("aaa").fallback("bbb")
              .slot("handoff_reason", "repeated_fallback").slot("handoff_status", "waiting"))
    tracker.save(came_back, ticket, looped, searching_chat("happy", utc(2024, 6, 4, 11, 0)))

    report = report_after_sync(engine, tracker)

    assert (report.conversations, report.handoffs, report.handoff_rate) == (4, 3, 0.75)
    assert (report.agent_joined, report.back_to_bot) == (1, 1)
    assert report.handoff_reasons == [("complaint", 1), ("repeated_fallback", 1), ("talk_to_human", 1)]
    assert (report.contained, report.automated) == (1, 1)
    assert [(d.handoffs, d.contained) for d in report.daily[2:4]] == [(2, 0), (1, 1)]
    assert ("order_status", 1) in report.top_intents


# ----------------------------------------------------------------------------- funnel, orders, revenue


def add_chat_order(engine, sender: str, number: str, total: int, placed: datetime, paid: bool,
                   via_checkout: bool = True) -> None:
    with session_scope(engine) as session:
        cart = Cart(session_id=sender, status="checked_out" if paid else "open", created_at=placed, updated_at=placed)
        order = Order(number=number, email=f"{sender}@example.com", status="paid" if paid else "pending_payment",
                      total_cents=total, subtotal_cents=total, source="chat" if via_checkout else "web",
                      conversation_id=sender, placed_at=placed, updated_at=placed)
        session.add_all([cart, order])
        session.flush()
        if via_checkout:
            session.add(CheckoutOrder(order_id=order.id, cart_id=cart.id, session_id=sender, created_at=placed,
                                      stock_taken_at=placed if paid else None))


def buying_chat(sender: str, at: datetime) -> Chat:
    return (searching_chat(sender, at)
            .turn("tell me more about the second one", "product_details", "action_product_details")
            .user("add it", "add_to_cart").action("action_add_to_cart").slot("cart_add_status", "added")
            .action("action_listen")
            .turn("checkout", "checkout", "action_start_checkout"))


def test_funnel_conversion_and_revenue_from_chat_orders(engine, tracker):
    buyer = buying_chat("buyer", utc(2024, 6, 3, 10, 0))
    unpaid = buying_chat("unpaid", utc(2024, 6, 3, 11, 0))
    # the card's "Add to cart" button, without asking for details: reached "product viewed" too
    button = (searching_chat("button", utc(2024, 6, 4, 10, 0)).user('/add_to_cart{"variant_id": 3}', "add_to_cart")
              .action("action_add_to_cart").slot("cart_add_status", "needs_variant").slot("cart_add_status", "added")
              .action("action_listen"))
    sold_out = (searching_chat("sold-out", utc(2024, 6, 4, 12, 0)).user("add it", "add_to_cart")
                .action("action_add_to_cart").slot("cart_add_status", "refused").action("action_listen"))
    browser = searching_chat("browser", utc(2024, 6, 5, 10, 0))
    greeter = Chat("greeter", utc(2024, 6, 5, 10, 0)).session_start().turn("hi", "greet", "action_greet")
    tracker.save(buyer, unpaid, button, sold_out, browser, greeter)
    add_chat_order(engine, "buyer", "SH-900001", 12_999, datetime(2024, 6, 3, 10, 2), paid=True)
    add_chat_order(engine, "unpaid", "SH-900002", 5_000, datetime(2024, 6, 3, 11, 2), paid=False)
    add_chat_order(engine, "buyer", "SH-900003", 7_001, datetime(2024, 5, 20, 9, 0), paid=True)  # before the range
    add_chat_order(engine, "greeter", "SH-900004", 9_999, datetime(2024, 6, 5, 10, 1), paid=True, via_checkout=False)

    report = report_after_sync(engine, tracker)

    assert report.funnel == [("search", 5, None), ("product viewed", 3, 0.6), ("added to cart", 3, 1.0),
                             ("checkout", 2, round(2 / 3, 4)), ("paid", 1, 0.5)]
    assert (report.chat_orders_paid, report.revenue_cents) == (1, 12_999)
    assert [(d.chat_orders_paid, d.revenue_cents) for d in report.daily[2:5]] == [(1, 12_999), (0, 0), (0, 0)]
    may = build_report(engine, DateRange(date(2024, 5, 1), date(2024, 5, 31)))
    assert (may.chat_orders_paid, may.revenue_cents, may.conversations) == (1, 7_001, 0)


def test_an_order_paid_in_a_later_conversation_of_the_same_shopper_is_not_credited_to_an_earlier_one(engine, tracker):
    chat = buying_chat("ana", utc(2024, 6, 3, 10, 0))
    chat.session_start(after=7200).turn("pay", "checkout", "action_start_checkout")
    tracker.save(chat)
    add_chat_order(engine, "ana", "SH-900010", 4_000, datetime(2024, 6, 3, 12, 30), paid=True)

    report = report_after_sync(engine, tracker)

    assert report.conversations == 2
    # the second conversation paid, so it reached every step before; the first stopped at checkout
    assert [(step, n) for step, n, _ in report.funnel] == [
        ("search", 2), ("product viewed", 2), ("added to cart", 2), ("checkout", 2), ("paid", 1)]


# ----------------------------------------------------------------------------- ratings, leads, intents


def test_csat_averages_the_survey_and_agent_ratings_shoppers_gave_in_the_range(engine, tracker):
    with session_scope(engine) as session:
        # the survey after a finished flow, rated 4 from its buttons; a shopper who rated unprompted (2)
        assert start_survey(session, "survey", "purchase", now=datetime(2024, 6, 4, 10, 0))
        record_feedback_rating(session, "survey", "4", now=datetime(2024, 6, 4, 10, 1))
        record_feedback_rating(session, "unprompted", "2 stars", now=datetime(2024, 6, 3, 9, 0))
        assert start_survey(session, "never-rated", "general", now=datetime(2024, 6, 4, 11, 0))
        record_feedback_rating(session, "last-month", "5", now=datetime(2024, 5, 31, 23, 0))
        # an agent helped, handed back, and was rated 5
        handoff = request_handoff(session, "helped", "talk_to_human", now=datetime(2024, 6, 3, 14, 0))
        claim(session, handoff.id, "alice", now=datetime(2024, 6, 3, 14, 1))
        resolve(session, handoff.id, "alice", now=datetime(2024, 6, 3, 14, 20))
        record_rating(session, "helped", "5", now=datetime(2024, 6, 3, 14, 21))

    report = report_after_sync(engine, tracker)

    assert (report.ratings, report.csat) == (3, round(11 / 3, 2))
    assert [(d.ratings, d.csat) for d in report.daily[2:4]] == [(2, 3.5), (1, 4.0)]
    with session_scope(engine) as session:
        survey_days = build_daily_report(session, WEEK.first, WEEK.last)
    assert sum(d.ratings for d in survey_days) == 2  # the survey's ratings, as `python -m shop report` counts them
    assert build_report(engine, DateRange(date(2024, 7, 1), date(2024, 7, 2))).csat is None


def test_leads_by_stage_counts_the_lead_forms_rows_created_in_the_range(engine, tracker):
    hot = LeadAnswers(email="dana@harbor.example", company="Harbor Logistics", role="Head of Operations",
                      quantity=200, budget_cents=1_500_000, timeline="within 3 weeks",
                      need="embroidered fleece jackets for our warehouse staff")
    cold = LeadAnswers(email="sam@example.com", quantity=12, need="t-shirts")
    consent = "The sales team may contact me."
    with session_scope(engine) as session:
        stored = [store_lead(session, "hot-1", hot, True, consent, now=datetime(2024, 6, 2, 12)),
                  store_lead(session, "cold-1", cold, True, consent, now=datetime(2024, 6, 3, 12)),
                  store_lead(session, "cold-2", cold, True, consent, now=datetime(2024, 6, 6, 12)),
                  store_lead(session, "hot-later", hot, True, consent, now=datetime(2024, 6, 9, 12))]
        # the same shopper sending the form again updates the lead: still one
        store_lead(session, "cold-1", cold, True, consent, now=datetime(2024, 6, 3, 12, 5))
    assert [lead.stage for lead in stored] == ["hot", "cold", "cold", "hot"]

    report = report_after_sync(engine, tracker)

    assert report.leads_by_stage == [("hot", 1), ("warm", 0), ("cold", 2)]
    with session_scope(engine) as session:
        in_range = dict(session.execute(
            select(Lead.stage, func.count()).where(Lead.created_at >= WEEK.start, Lead.created_at < WEEK.end)
            .group_by(Lead.stage)).all())
    assert {stage: n for stage, n in report.leads_by_stage if n} == in_range


def test_carts_recovered_after_a_reminder_count_as_the_daily_report_counts_them(engine, tracker, monkeypatch):
    use_reminder_settings(monkeypatch)
    when = datetime(2024, 6, 3, 12, 0)
    with session_scope(engine) as session:
        variants = catalog(session)
    fill_cart(engine, "came-back", (variants["tee"].id, 2), now=when)
    fill_cart(engine, "never-came-back", (variants["cream"].id, 1), now=when)
    sender = RecordingSender()
    with session_scope(engine) as session:
        assert run_due_reminders(session, when + timedelta(seconds=DELAY), sender) == 2
    code = next(entities["discount_code"] for conversation, _, entities in sender.calls if conversation == "came-back")
    order = check_out_and_pay(engine, "came-back", when + timedelta(seconds=DELAY + 30), code=code)

    # the dashboard only reads: until a refresh (the background copy) credits the cart, none is recovered
    assert build_report(engine, WEEK).carts_recovered == 0
    refresh(engine, tracker.url, now=when + timedelta(hours=1))
    report = build_report(engine, WEEK)

    assert (report.reminders_sent, report.carts_recovered, report.revenue_recovered_cents) == (2, 1, order.total_cents)
    june3 = report.daily[2]
    assert (june3.reminders_sent, june3.carts_recovered, june3.revenue_recovered_cents) == (2, 1, order.total_cents)
    with session_scope(engine) as session:
        daily_report = build_daily_report(session, WEEK.first, WEEK.last)
    assert [(d.carts_recovered, d.revenue_recovered_cents) for d in daily_report] == [
        (d.carts_recovered, d.revenue_recovered_cents) for d in report.daily]
    assert (report.chat_orders_paid, report.revenue_cents) == (1, order.total_cents)  # a chat order too
    summary = dict(report.tables()["summary"][1])
    assert (summary["carts_recovered"], summary["revenue_recovered_cents"]) == (1, order.total_cents)


def test_top_intents(engine, tracker):
    chat = searching_chat("ana", utc(2024, 6, 3, 9, 0)).turn("more", "show_more", "action_search_products")
    tracker.save(chat, searching_chat("ben", utc(2024, 6, 3, 9, 0)))

    report = report_after_sync(engine, tracker)

    assert report.top_intents == [("greet", 2), ("search_product", 2), ("show_more", 1)]


def test_an_empty_range_reports_zeroes_and_no_rates(engine, tracker):
    report = report_after_sync(engine, tracker)

    assert (report.conversations, report.messages, report.revenue_cents) == (0, 0, 0)
    assert report.containment_rate is None and report.fallback_rate is None and report.csat is None
    assert [n for _, n, _ in report.funnel] == [0, 0, 0, 0, 0]


def test_ranges_default_to_thirty_days_and_impossible_ones_are_refused():
    assert DateRange.of(last=date(2024, 6, 30)) == DateRange(date(2024, 6, 1), date(2024, 6, 30))
    assert DateRange.of(date(2024, 6, 29), date(2024, 6, 30)).days() == [date(2024, 6, 29), date(2024, 6, 30)]
    with pytest.raises(AnalyticsError, match="ends"):
        DateRange(date(2024, 6, 7), date(2024, 6, 1))
    with pytest.raises(AnalyticsError, match="must end before"):
        DateRange.of(date(2024, 6, 7), date.max)
    with pytest.raises(AnalyticsError, match="must start after"):
        DateRange.of(last=date(1, 1, 5))


# ----------------------------------------------------------------------------- the commands


def run_shop(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shop", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def command_env(database_url, tracker):
    engine = make_engine(database_url)
    create_schema(engine)
    engine.dispose()
    buyer = buying_chat("buyer", utc(2024, 6, 3, 10, 0)).fallback("do you ship to mars")
    tracker.save(buyer, searching_chat("ben", utc(2024, 6, 4, 10, 0)).fallback("do you ship to Mars"))
    return {**os.environ, "SHOP_DATABASE_URL": database_url, "ANALYTICS_TRACKER_STORE_URL": tracker.url}


def test_the_analytics_command_prints_the_figures_and_exports_every_table(command_env, tmp_path):
    result = run_shop("analytics", "--from", "2024-06-01", "--to", "2024-06-07", "--csv", str(tmp_path / "csv"),
                      env=command_env)

    assert result.returncode == 0, result.stderr
    assert "42 new events stored (42 read)" in result.stderr
    lines = result.stdout.splitlines()
    assert "Conversation analytics 2024-06-01 to 2024-06-07 (UTC days)" in lines
    assert any(line.split() == ["conversations", "2"] for line in lines)
    assert any(line.split()[:3] == ["fallback", "rate", "22.2%"] for line in lines)
    assert any(line.strip().startswith("2x") and "do you ship to" in line for line in lines)
    assert any(line.split()[:3] == ["carts", "recovered", "0"] and "0 reminders sent" in line for line in lines)
    files = sorted(p.name for p in (tmp_path / "csv").iterdir())
    assert files == ["daily.csv", "funnel.csv", "handoff_reasons.csv", "leads_by_stage.csv", "summary.csv",
                     "top_intents.csv", "unanswered_messages.csv"]
    with open(tmp_path / "csv" / "daily.csv", newline="") as handle:
        daily = list(csv.DictReader(handle))
    assert [(r["day"], r["conversations"], r["fallback_messages"]) for r in daily[2:4]] == [
        ("2024-06-03", "1", "1"), ("2024-06-04", "1", "1")]
    assert {r["carts_recovered"] for r in daily} == {"0"} and "revenue_recovered_cents" in daily[0]
    with open(tmp_path / "csv" / "funnel.csv", newline="") as handle:
        assert [row[:2] for row in csv.reader(handle)][1:3] == [["search", "2"], ["product viewed", "1"]]

    again = run_shop("analytics", "--from", "2024-06-01", "--to", "2024-06-07", env=command_env)
    assert "0 new events stored" in again.stderr
    assert any(line.split() == ["conversations", "2"] for line in again.stdout.splitlines())


def test_the_unanswered_command_writes_the_nlu_stub(command_env, tmp_path):
    out = tmp_path / "stub" / "unanswered.yml"

    result = run_shop("unanswered", "--from", "2024-06-01", "--to", "2024-06-07", "--out", str(out), env=command_env)

    assert result.returncode == 0, result.stderr
    assert "Wrote 1 unanswered messages" in result.stdout
    [block] = yaml.safe_load(out.read_text())["nlu"]
    assert [(e["text"], e["metadata"]["times"]) for e in block["examples"]] == [("do you ship to Mars", 2)]


def test_a_backwards_range_is_refused_and_reads_nothing(command_env):
    result = run_shop("analytics", "--from", "2024-06-07", "--to", "2024-06-01", env=command_env)

    assert result.returncode == 1
    assert "the range ends (2024-06-01) before it starts (2024-06-07)" in result.stderr
    engine = make_engine(command_env["SHOP_DATABASE_URL"])
    try:
        assert not inspect(engine).has_table("analytics_events")
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- the RabbitMQ consumer


def test_the_broker_consumer_stores_rasas_messages_and_drops_malformed_ones(engine):
    """Against the RabbitMQ server of the production profile (RABBITMQ_HOST..., default localhost:5672)."""
    import asyncio
    import uuid

    import aio_pika

    from shop.analytics import broker_settings, consume

    settings = broker_settings({**os.environ, "RABBITMQ_QUEUE": f"analytics_test_{uuid.uuid4().hex[:10]}"})
    chat = searching_chat("ana", utc(2024, 6, 3, 10, 0))
    # as rasa.core.brokers.pika publishes them: the event's JSON with its sender id, persistent
    bodies = [json.dumps({"sender_id": "ana", **event}).encode() for event in chat.events[:7]]
    bodies.insert(3, b"not an event")

    async def publish_then_consume() -> tuple:
        connection = await aio_pika.connect_robust(host=settings.host, port=settings.port, login=settings.username,
                                                   password=settings.password)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(settings.queue, durable=True)
            for body in bodies:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=settings.queue)
            try:
                handled = await asyncio.wait_for(consume(engine, settings, stop_after=len(bodies)), timeout=30)
                left = (await channel.declare_queue(settings.queue, durable=True)).declaration_result.message_count
            finally:
                await queue.delete(if_unused=False, if_empty=False)
        return handled, left

    handled, left = asyncio.run(publish_then_consume())

    assert (handled, left) == (8, 0)
    assert stored_events(engine) == 7
    report = build_report(engine, WEEK)
    assert (report.conversations, report.messages, report.top_intents) == (1, 1, [("greet", 1)])
