"""Scale-out on the production profile (the package's `scaled` stack, tests/production/conftest.py):
turns alternating between two Rasa replicas, the Redis lock store, events on RabbitMQ, and faults.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests
from sqlalchemy import select

from ops.action_fallback import DEFAULT_MESSAGE, TALK_TO_A_PERSON
from shop.db import make_engine
from shop.models import Order
from shop.seed import DEMO_CUSTOMER
from tests.e2e.catalog_checks import assert_are_red_sneakers_under
from tests.e2e.test_cart_recovery import in_stock_variant
from tests.e2e.test_rest import text_of
from tests.production.conftest import LOCK_TROUBLE, RASA_TOKEN, REDIS_DB, REDIS_HOST, REDIS_PORT, SHOP_NAME
from tests.production.tracker_checks import assert_every_turn_complete_and_unmixed, turns

LISTED_PRODUCT = re.compile(r"^\d+\. (.+?) by .+?: \$\d", re.MULTILINE)
pytestmark = pytest.mark.timeout(1500)


def test_turns_alternate_between_replicas_and_the_tracker_keeps_every_event_once(scaled):
    sender = f"scaled-{uuid.uuid4().hex[:8]}"
    messages = ["hello", "show me red sneakers under 80 dollars", "cheaper", "thanks", "bye"]

    # Straight to the replicas in turn (the shop front's own calls through the balancer would shift its turns).
    replies = [scaled.say(sender, message, via=scaled.replica_urls[i % 2]).json()
               for i, message in enumerate(messages)]

    assert all(reply for reply in replies), replies
    assert f"welcome to {SHOP_NAME}" in replies[0][0]["text"]
    listing = "\n".join(r.get("text", "") for r in replies[1])
    shop_engine = make_engine(scaled.shop_url)
    try:
        assert_are_red_sneakers_under(shop_engine, LISTED_PRODUCT.findall(listing), 8000)
    finally:
        shop_engine.dispose()

    rows = scaled.tracker_rows(sender)
    assert [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"] == messages
    assert len(turns(rows)) == len(messages)
    assert_every_turn_complete_and_unmixed(rows)
    bot_texts = [json.loads(r["data"]).get("text") for r in rows if r["type_name"] == "bot"]
    assert [t for t in bot_texts if t] == [r["text"] for reply in replies for r in reply if r.get("text")]
    assert not LOCK_TROUBLE.search(scaled.rasa_logs())


def test_every_stored_event_is_published_to_rabbitmq(scaled):
    sender = f"broker-{uuid.uuid4().hex[:8]}"
    for i, message in enumerate(["hello", "thanks"]):
        scaled.say(sender, message, via=scaled.replica_urls[i % 2])

    rows = scaled.tracker_rows(sender)
    assert len(rows) > 4
    # Rasa publishes in the background after replying: collect until all arrived or 10 s passed.
    published, deadline = [], time.monotonic() + 10
    while len(published) < len(rows) and time.monotonic() < deadline:
        published += [e for e in scaled.published_events() if e["sender_id"] == sender]
    assert [(e["event"], e["timestamp"]) for e in published] == [(r["type_name"], r["timestamp"]) for r in rows]


def test_concurrent_messages_to_one_conversation_are_served_one_at_a_time(scaled):
    sender = f"burst-{uuid.uuid4().hex[:8]}"
    messages = ["hello", "hi there", "good morning", "hey", "thanks", "thank you"]

    with ThreadPoolExecutor(len(messages)) as pool:
        responses = list(pool.map(lambda i: scaled.say(sender, messages[i], via=scaled.replica_urls[i % 2]),
                                  range(len(messages))))

    assert all(r.json() for r in responses)
    rows = scaled.tracker_rows(sender)
    user_texts = [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"]
    assert sorted(user_texts) == sorted(messages)
    assert_every_turn_complete_and_unmixed(rows)
    assert not LOCK_TROUBLE.search(scaled.rasa_logs())


def test_a_conversation_waits_while_another_replica_holds_its_redis_lock(scaled):
    from rasa.core.lock_store import RedisLockStore

    sender = f"locked-{uuid.uuid4().hex[:8]}"
    locks = RedisLockStore(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, key_prefix=scaled.redis_key_prefix)
    held = locks.issue_ticket(sender, lock_lifetime=120)

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(scaled.say, sender, "hello")
        # The replica queues its own ticket behind the one held here, and waits for its turn.
        deadline = time.monotonic() + 60
        while len(locks.get_lock(sender).tickets) < 2:
            finished, _ = wait([pending], timeout=0.2)
            assert not finished, f"answered while the lock was held: {pending.result().text}"
            assert time.monotonic() < deadline, "no replica queued for the conversation's lock"
        assert not pending.done()
        assert scaled.tracker_rows(sender) == []

        locks.finish_serving(sender, held)
        reply = pending.result(timeout=120).json()

    assert f"welcome to {SHOP_NAME}" in reply[0]["text"]
    assert [r["type_name"] for r in scaled.tracker_rows(sender)].count("user") == 1
    assert locks.get_lock(sender) is None or not locks.get_lock(sender).tickets


# The fault tests come last: they kill servers (run_scaled.sh starts them again).

def test_with_rabbitmq_down_shoppers_are_answered_and_every_event_is_published_once_it_is_back(scaled):
    sender = f"nobroker-{uuid.uuid4().hex[:8]}"
    scaled.say(sender, "hello")
    scaled.rabbitmq.down()
    try:
        for message, expected in [("show me red sneakers under 80 dollars", "red sneakers under $80"),
                                  ("thanks", "")]:
            started = time.monotonic()
            replies = scaled.say(sender, message).json()
            seconds = time.monotonic() - started
            assert seconds < 5, f"{message!r} took {seconds:.1f}s with RabbitMQ down"
            assert expected in "\n".join(r.get("text") or "" for r in replies) and replies
            assert DEFAULT_MESSAGE not in [r.get("text") for r in replies]
    finally:
        scaled.rabbitmq.up()

    assert scaled.say(sender, "bye").json()
    stored = {(r["type_name"], r["timestamp"]) for r in scaled.tracker_rows(sender)}
    # Rasa's robust connection comes back within seconds and publishes what it kept meanwhile. Delivery is
    # at least once: an event in flight when the connection broke can arrive twice (the analytics consumer
    # stores each event once), but none may be missing.
    published, deadline = set(), time.monotonic() + 60
    while published != stored and time.monotonic() < deadline:
        published |= {(e["event"], e["timestamp"]) for e in scaled.published_events() if e["sender_id"] == sender}
        time.sleep(0.5)
    assert published == stored


def test_with_every_action_server_down_the_shopper_hears_why_and_gets_a_person_offered(scaled):
    sender = f"down-{uuid.uuid4().hex[:8]}"
    assert f"welcome to {SHOP_NAME}" in scaled.say(sender, "hello").json()[0]["text"]
    killed = {port: scaled.kill("actions", port) for port in scaled.action_replica_ports}

    started = time.monotonic()
    replies = scaled.say(sender, "show me red sneakers under 80 dollars").json()
    seconds = time.monotonic() - started

    assert seconds < 5, seconds
    assert replies[0] == {"recipient_id": sender, "text": DEFAULT_MESSAGE, "buttons": [TALK_TO_A_PERSON]}
    assert [r.get("text") for r in replies].count(DEFAULT_MESSAGE) == 1

    for port in scaled.action_replica_ports:  # the supervisor starts them again
        scaled.supervisor.wait_until_ready(f"http://127.0.0.1:{port}/health", lambda r: r.ok, 180)
        assert scaled.pid_of(f"actions-{port}") != killed[port]
    replies = scaled.say(sender, "show me red sneakers under 80 dollars").json()
    listing = "\n".join(r.get("text", "") for r in replies)
    assert LISTED_PRODUCT.search(listing), f"no products listed once the action servers were back: {replies}"
    shop_engine = make_engine(scaled.shop_url)
    try:
        assert_are_red_sneakers_under(shop_engine, LISTED_PRODUCT.findall(listing), 8000)
    finally:
        shop_engine.dispose()


def test_a_replica_killed_mid_conversation_loses_nothing(scaled):
    sender = f"crash-{uuid.uuid4().hex[:8]}"
    first = scaled.say(sender, "show me red sneakers under 80 dollars")
    crashed = first.headers["X-Upstream"]
    scaled.kill("rasa", int(crashed.rsplit(":", 1)[1]))

    second = scaled.say(sender, "in black instead")
    third = scaled.say(sender, "thanks")

    assert {second.headers["X-Upstream"], third.headers["X-Upstream"]} == set(scaled.replica_urls) - {crashed}
    assert second.json() and third.json()
    survivor = second.headers["X-Upstream"]
    slots = requests.get(f"{survivor}/conversations/{sender}/tracker",
                         params={"token": RASA_TOKEN}, timeout=30).json()["slots"]
    assert slots["color"] == "black"
    assert slots["category"] and slots["price_max"]  # from the turn the crashed replica handled
    rows = scaled.tracker_rows(sender)
    assert [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"] == [
        "show me red sneakers under 80 dollars", "in black instead", "thanks"]
    assert_every_turn_complete_and_unmixed(rows)


def test_a_replica_killed_after_verification_and_an_added_item_continues_the_same_conversation(scaled):
    scaled.wait_until_every_replica_answers()
    shop_engine = make_engine(scaled.shop_url)
    try:
        with shop_engine.connect() as connection:
            orders = dict(connection.execute(select(Order.status, Order.number).where(
                Order.email == DEMO_CUSTOMER["email"], Order.status.in_(["shipped", "delivered"]))).all())
        handle, title, color, size = in_stock_variant(shop_engine)
    finally:
        shop_engine.dispose()
    sender = f"restart-{uuid.uuid4().hex[:8]}"
    assert "order number" in text_of(scaled.say(sender, "where is my order?").json())
    verified = text_of(scaled.say(sender, f"{orders['shipped']} {DEMO_CUSTOMER['email']}").json())
    assert f"Order {orders['shipped']}" in verified
    added = scaled.say(sender, f'/add_to_cart{{"product_handle": "{handle}", "color": "{color}", "size": "{size}"}}')
    assert f"Added 1 x {title}" in text_of(added.json())
    crashed = added.headers["X-Upstream"]
    scaled.kill("rasa", int(crashed.rsplit(":", 1)[1]))

    cart = scaled.say(sender, "what's in my cart?")
    status = scaled.say(sender, f"where is {orders['delivered']}")

    assert {cart.headers["X-Upstream"], status.headers["X-Upstream"]} == set(scaled.replica_urls) - {crashed}
    assert title in text_of(cart.json())
    # Still verified: the other order's status comes without asking for the email again.
    status_text = text_of(status.json())
    assert f"Order {orders['delivered']}" in status_text and "email" not in status_text.lower()
    assert_every_turn_complete_and_unmixed(scaled.tracker_rows(sender))
