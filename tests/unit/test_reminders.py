"""Abandoned-cart reminders with an injected clock (T0 + seconds) and a recording sender, on SQLite and
PostgreSQL: the delay, re-arming on cart changes, the maximum, the stop rules, the single-use code, recovery
with its revenue, retries when Rasa is down, and a restart (a new engine) finding the jobs."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from shop.carts import cart_lines, find_open_cart, remove_item
from shop.db import make_engine, session_scope
from shop.models import Cart, DiscountCode
from shop.promotions import check_code
from shop.reminders import (
    CART_REMINDER_INTENT,
    CartReminder,
    mark_recovered_carts,
    run_due_reminders,
    schedule_for_cart,
    stop_reminders,
)
from tests.unit.recovery_helpers import (  # noqa: F401 - shop is a fixture
    DELAY, T0, RecordingSender, check_out_and_pay, fill_cart, reminders, shop, url_of, use_reminder_settings,
)


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    use_reminder_settings(monkeypatch)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def run(engine, seconds, sender, **kwargs) -> int:
    with session_scope(engine) as session:
        return run_due_reminders(session, at(seconds), sender, **kwargs)


def test_the_reminder_is_sent_once_the_delay_has_passed_with_a_single_use_code(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 2))
    sender = RecordingSender()

    assert run(engine, DELAY - 1, sender) == 0
    assert sender.calls == []
    assert run(engine, DELAY, sender) == 1

    [(conversation, intent, entities)] = sender.calls
    assert (conversation, intent) == ("chat-1", CART_REMINDER_INTENT)
    with session_scope(engine) as session:
        code = session.execute(select(DiscountCode).where(DiscountCode.code == entities["discount_code"])).scalar_one()
        assert code.code.startswith("COMEBACK")
        assert (code.kind, code.value, code.usage_limit, code.public) == ("percent", 10, 1, False)
        assert code.ends_at == at(DELAY) + timedelta(hours=48)
    # the first is sent, the second is waiting a delay later
    assert reminders(engine, "chat-1") == [(1, "sent", "", 1), (2, "scheduled", "", 0)]
    assert run(engine, DELAY + 1, sender) == 0


def test_every_cart_change_re_arms_the_reminder(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    fill_cart(engine, "chat-1", (shop["cream"], 1), now=at(50))
    sender = RecordingSender()

    assert run(engine, DELAY, sender) == 0
    assert run(engine, 50 + DELAY, sender) == 1
    assert len(reminders(engine, "chat-1")) == 2  # one sent, the next scheduled: never two at once


def test_a_shopper_still_chatting_postpones_the_reminder(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    sender = RecordingSender()
    seen = {"chat-1": at(45)}  # Rasa's latest event: the shopper kept talking without touching the cart

    assert run(engine, DELAY, sender, last_activity=seen.get) == 0
    assert run(engine, 45 + DELAY, sender, last_activity=seen.get) == 1


def test_at_most_the_configured_number_of_reminders_each_with_its_own_code(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    sender = RecordingSender()

    assert run(engine, DELAY, sender) == 1
    assert run(engine, 2 * DELAY - 1, sender) == 0
    assert run(engine, 2 * DELAY, sender) == 1
    assert run(engine, 100 * DELAY, sender) == 0
    codes = [entities["discount_code"] for _, _, entities in sender.calls]
    assert len(set(codes)) == 2
    assert reminders(engine, "chat-1") == [(1, "sent", "", 1), (2, "sent", "", 1)]
    # a change after the last one schedules nothing more
    fill_cart(engine, "chat-1", (shop["cream"], 1), now=at(101 * DELAY))
    assert run(engine, 200 * DELAY, sender) == 0
    assert len(reminders(engine, "chat-1")) == 2


def test_no_code_when_the_discount_is_switched_off(engine, shop, monkeypatch):
    monkeypatch.setenv("SHOP_CART_REMINDER_DISCOUNT_PERCENT", "0")
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    sender = RecordingSender()
    assert run(engine, DELAY, sender) == 1
    assert sender.calls == [("chat-1", CART_REMINDER_INTENT, {})]
    with session_scope(engine) as session:
        assert session.execute(select(CartReminder.discount_code_id)).scalars().all() == [None, None]


def test_reminders_switched_off_schedule_nothing(engine, shop, monkeypatch):
    monkeypatch.setenv("SHOP_CART_REMINDER_MAX", "0")
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    assert reminders(engine, "chat-1") == []


def test_a_cart_checked_out_before_the_reminder_gets_none(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    check_out_and_pay(engine, "chat-1", at(30))
    sender = RecordingSender()

    assert run(engine, DELAY, sender) == 0
    assert sender.calls == []
    assert reminders(engine, "chat-1") == [(1, "stopped", "checked_out", 0)]
    with session_scope(engine) as session:
        assert session.execute(select(CartReminder.status).where(CartReminder.status == "recovered")).first() is None


def test_an_emptied_cart_gets_no_reminder(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    with session_scope(engine) as session:
        remove_item(session, "chat-1", shop["tee"], now=at(10))
    assert reminders(engine, "chat-1") == [(1, "stopped", "emptied", 0)]
    assert run(engine, 10 * DELAY, RecordingSender()) == 0


def test_no_thanks_stops_reminders_for_the_conversation_for_good(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    sender = RecordingSender()
    assert run(engine, DELAY, sender) == 1

    with session_scope(engine) as session:
        assert stop_reminders(session, "chat-1", at(DELAY + 5)) == 1
    fill_cart(engine, "chat-1", (shop["cream"], 1), now=at(DELAY + 10))  # a later change re-arms nothing
    assert run(engine, 10 * DELAY, sender) == 0
    assert reminders(engine, "chat-1") == [(1, "sent", "", 1), (2, "stopped", "declined", 0)]
    with session_scope(engine) as session:
        again = stop_reminders(session, "chat-1", at(11 * DELAY))  # saying it twice is fine
    assert again == 0


def test_the_code_works_once(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    sender = RecordingSender()
    run(engine, DELAY, sender)
    code = sender.calls[0][2]["discount_code"]

    order = check_out_and_pay(engine, "chat-1", at(DELAY + 20), code=code)
    assert order.discount_cents == 150  # 10% of $15.00

    fill_cart(engine, "chat-2", (shop["cream"], 1), now=at(DELAY + 30))
    with session_scope(engine) as session:
        row = session.execute(select(DiscountCode).where(DiscountCode.code == code)).scalar_one()
        again = check_code(session, row, lines=cart_lines(session, find_open_cart(session, "chat-2")),
                           email="other@example.com", now=at(DELAY + 40))
    assert (again.ok, again.reason) == (False, "used_up")


def test_a_checkout_after_a_reminder_is_a_recovered_cart_with_its_revenue(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 2), (shop["cream"], 1))
    sender = RecordingSender()
    run(engine, DELAY, sender)
    order = check_out_and_pay(engine, "chat-1", at(DELAY + 20), code=sender.calls[0][2]["discount_code"])

    assert run(engine, DELAY + 25, sender) == 0
    with session_scope(engine) as session:
        [recovered] = session.execute(select(CartReminder).where(CartReminder.status == "recovered")).scalars().all()
        assert (recovered.sequence, recovered.recovered_order_id) == (1, order.id)
        assert recovered.recovered_cents == order.total_cents > 0
        assert recovered.recovered_at == at(DELAY + 20)
        # the scheduled second reminder is stopped when it falls due
    assert run(engine, 3 * DELAY, sender) == 0
    assert reminders(engine, "chat-1") == [(1, "recovered", "", 1), (2, "stopped", "checked_out", 0)]
    with session_scope(engine) as session:
        assert mark_recovered_carts(session, at(4 * DELAY)) == 0  # credited once


def test_rasa_down_keeps_the_reminder_due_and_retries_with_the_same_code(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    down = RecordingSender(accept=False)

    assert run(engine, DELAY, down) == 0
    assert reminders(engine, "chat-1") == [(1, "scheduled", "", 1)]
    assert run(engine, DELAY + 29, down) == 0 and len(down.calls) == 1  # waits SHOP_WORKER_RETRY_SECONDS
    up = RecordingSender()
    assert run(engine, DELAY + 30, up) == 1
    assert up.calls[0][2] == down.calls[0][2]  # the same code: one code per reminder, whatever the tries
    assert reminders(engine, "chat-1")[0] == (1, "sent", "", 2)


def test_a_second_worker_at_the_same_moment_does_not_send_it_again(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    inner_sent = []

    def sender_that_races(conversation_id, intent, entities):
        # While this worker is talking to Rasa, another worker runs the same round.
        with session_scope(engine) as other:
            inner_sent.append(run_due_reminders(other, at(DELAY), RecordingSender()))
        return True

    assert run(engine, DELAY, sender_that_races) == 1
    assert inner_sent == [0]


def test_a_restart_loses_nothing(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    url = url_of(engine)
    engine.dispose()  # the process that scheduled it is gone

    fresh = make_engine(url)
    try:
        sender = RecordingSender()
        assert run(fresh, DELAY, sender) == 1
        assert sender.calls[0][0] == "chat-1"
    finally:
        fresh.dispose()


def test_schedule_for_cart_is_what_cart_changes_call(engine, shop):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    with session_scope(engine) as session:
        cart = session.execute(select(Cart).where(Cart.session_id == "chat-1")).scalar_one()
        reminder = schedule_for_cart(session, cart, at(500))
        assert reminder.due_at == at(500 + DELAY)
