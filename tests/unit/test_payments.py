"""Payments: the sandbox gateway, signed webhooks, idempotent event handling, stock taken once when paid."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from shop.carts import add_item, cart_view
from shop.checkout import CheckoutOrder, cancel_order, holds_stock, place_order
from shop.db import session_scope
from shop.models import Cart, DiscountCode, Order, Refund, Variant
from shop.payments import (
    SIGNATURE_HEADER,
    PaymentError,
    PaymentEvent,
    PaymentEventRecord,
    PaymentSessionRecord,
    SandboxPaymentProvider,
    WebhookError,
    handle_payment_event,
    sign,
)
from shop.promotions import apply_code
from tests.unit.service_helpers import catalog, make_order, snapshot

NOW = datetime(2024, 6, 15, 12, 0)
SECRET = "whsec_unit_test_secret"
DETAILS = dict(name="Sam Rivera", email="sam@example.com", address_line="742 Maple Street", city="Portland",
               postcode="97205", country="US", shipping_method="standard")
CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"


@pytest.fixture
def provider():
    return SandboxPaymentProvider(base_url="http://shop.test", secret=SECRET)


@pytest.fixture
def shop(engine):
    with session_scope(engine) as session:
        ids = {name: variant.id for name, variant in catalog(session).items()}
        session.add(DiscountCode(code="SAVE20", kind="percent", value=20, public=True, once_per_customer=False))
    return ids


def checkout(engine, session_id, *lines, code=None, email="sam@example.com") -> str:
    with session_scope(engine) as session:
        for variant_id, quantity in lines:
            add_item(session, session_id, variant_id, quantity, now=NOW)
        if code:
            assert apply_code(session, session_id, code, NOW).ok
        return place_order(session, session_id, {**DETAILS, "email": email}, NOW).number


def start(engine, provider, number):
    with session_scope(engine) as session:
        order = session.execute(select(Order).where(Order.number == number)).scalar_one()
        return provider.create_session(order, now=NOW)


def card(engine, provider, payment_session_id, number, expiry="12/30", cvc="123", now=NOW):
    with session_scope(engine) as session:
        return provider.submit_card(session, payment_session_id, card_number=number, expiry=expiry, cvc=cvc, now=now)


def deliver(engine, event, **hooks):
    with session_scope(engine) as session:
        return handle_payment_event(session, event, now=NOW, **hooks)


def order_state(engine, number):
    with session_scope(engine) as session:
        order = session.execute(select(Order).where(Order.number == number)).scalar_one()
        return order.status, [(r.amount_cents, r.status) for r in order.refunds]


def stock(engine, variant_id):
    with session_scope(engine) as session:
        return session.get(Variant, variant_id).stock


# -- signatures ---------------------------------------------------------------------------------------

def _event(**changes) -> PaymentEvent:
    event = PaymentEvent(id="evt_1", type="payment.succeeded", created=1718452800, payment_session_id="ps_test_x",
                         order_number="SH-100001", amount_cents=2219, card_brand="Visa", card_last4="4242")
    return replace(event, **changes)


def test_a_genuine_event_verifies(provider):
    body, headers = provider.signed_request(_event(), now=NOW)
    assert set(headers) == {"Content-Type", SIGNATURE_HEADER}
    assert provider.verify_webhook(headers, body, now=NOW + timedelta(minutes=4)) == _event()
    lower = {k.lower(): v for k, v in headers.items()}
    assert provider.verify_webhook(lower, body, now=NOW).id == "evt_1"


@pytest.mark.parametrize("tamper, code", [
    (lambda body, headers: (body, {SIGNATURE_HEADER: sign("someone-elses-secret", body, 1718452800)}), "bad_signature"),
    (lambda body, headers: (body.replace(b"2219", b"1"), headers), "bad_signature"),
    (lambda body, headers: (body, {}), "missing_signature"),
    (lambda body, headers: (body, {SIGNATURE_HEADER: "v1=abc"}), "bad_signature"),
    (lambda body, headers: (body, {SIGNATURE_HEADER: headers[SIGNATURE_HEADER].replace("t=", "t=1")}), "bad_signature"),
])
def test_forged_or_tampered_events_are_rejected(provider, tamper, code):
    body, headers = provider.signed_request(_event(), now=NOW)
    body, headers = tamper(body, headers)
    with pytest.raises(WebhookError) as caught:
        provider.verify_webhook(headers, body, now=NOW)
    assert caught.value.code == code


def test_old_and_future_timestamps_are_rejected(provider):
    body, headers = provider.signed_request(_event(), now=NOW)
    with pytest.raises(WebhookError) as caught:
        provider.verify_webhook(headers, body, now=NOW + timedelta(minutes=5, seconds=1))
    assert caught.value.code == "too_old" and "a replay?" in caught.value.message
    with pytest.raises(WebhookError) as caught:
        provider.verify_webhook(headers, body, now=NOW - timedelta(minutes=6))
    assert caught.value.code == "too_old"


def test_a_signed_but_malformed_body_is_rejected(provider):
    for body in (b"not json", b"[1, 2]", json.dumps({"id": "evt_1", "type": "payment.refunded"}).encode()):
        headers = {SIGNATURE_HEADER: sign(SECRET, body, 1718452800)}
        with pytest.raises(WebhookError) as caught:
            provider.verify_webhook(headers, body, now=NOW)
        assert caught.value.code == "malformed"


def test_the_secret_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", "from-env")
    monkeypatch.setenv("PAYMENT_WEBHOOK_URL", "http://hooks.test/in")
    monkeypatch.setenv("SHOP_PUBLIC_URL", "http://front.test/")
    sandbox = SandboxPaymentProvider()
    assert sandbox.secret == "from-env" and sandbox.webhook_url == "http://hooks.test/in"
    assert sandbox.page_url("ps_test_abc") == "http://front.test/pay/ps_test_abc"
    monkeypatch.delenv("PAYMENT_WEBHOOK_URL")
    assert SandboxPaymentProvider().webhook_url == "http://front.test/webhooks/payments"


# -- the happy path, once -----------------------------------------------------------------------------

def test_a_successful_payment_marks_paid_takes_stock_once_counts_the_code_and_checks_out(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["sneakers42"], 1), (shop["tee"], 2), code="SAVE20")
    ps = start(engine, provider, number)
    assert ps.url == f"http://shop.test/pay/{ps.id}" and ps.amount_cents == 7511
    attempt = card(engine, provider, ps.id, CARD_OK)
    assert attempt.outcome == "succeeded" and attempt.redirect_url == f"http://shop.test/pay/{ps.id}/success"
    event = attempt.event
    assert (event.type, event.amount_cents, event.card_brand, event.card_last4) == ("payment.succeeded", 7511, "Visa",
                                                                                    "4242")
    calls = []
    outcome = deliver(engine, event, on_paid=calls.append)
    assert (outcome.status, outcome.changed, outcome.conversation_id) == ("paid", True, "chat-1")
    assert outcome.message == ("Payment received: order SH-100001 is paid ($75.11, Visa ending 4242). We'll let you "
                               "know when it ships.")
    assert calls == [outcome]
    assert order_state(engine, number) == ("paid", [])
    assert (stock(engine, shop["sneakers42"]), stock(engine, shop["tee"])) == (19, 18)
    with session_scope(engine) as session:
        assert session.execute(select(DiscountCode.times_used)).scalar_one() == 1
        assert session.execute(select(Cart.status)).scalars().all() == ["checked_out"]
        order = session.execute(select(Order)).scalar_one()
        assert session.get(CheckoutOrder, order.id).stock_taken_at == NOW and holds_stock(session, order)
        record = session.get(PaymentSessionRecord, ps.id)
        assert (record.status, record.card_brand, record.card_last4, record.amount_cents) == (
            "succeeded", "Visa", "4242", 7511)
        assert cart_view(session, "chat-1").is_empty  # the next cart starts empty

    # the same webhook again (a retry or a replay): nothing changes, no second notification
    before = snapshot(engine)
    again = deliver(engine, event, on_paid=calls.append)
    assert (again.status, again.changed) == ("duplicate", False)
    body, headers = provider.signed_request(event, now=NOW + timedelta(minutes=1))
    replayed = provider.verify_webhook(headers, body, now=NOW + timedelta(minutes=1))
    assert deliver(engine, replayed).status == "duplicate"
    assert snapshot(engine) == before and calls == [outcome]
    # a second success event for the same payment: still paid once
    other = deliver(engine, replace(event, id="evt_other"))
    assert (other.status, other.changed) == ("already_paid", False)
    assert (stock(engine, shop["sneakers42"]), stock(engine, shop["tee"])) == (19, 18)
    with session_scope(engine) as session:
        assert session.execute(select(DiscountCode.times_used)).scalar_one() == 1
    # cancelling the paid order now goes through shop.orders: stock back, full refund
    with session_scope(engine) as session:
        result = cancel_order(session, number)
    assert result.refund_cents == 7511
    assert (stock(engine, shop["sneakers42"]), stock(engine, shop["tee"])) == (20, 20)


def test_a_declined_card_leaves_the_order_pending_and_the_cart_intact(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 2))
    ps = start(engine, provider, number)
    attempt = card(engine, provider, ps.id, CARD_DECLINED)
    assert attempt.outcome == "declined"
    assert attempt.message == "Your card was declined. No money was taken; you can try another card."
    failed = []
    outcome = deliver(engine, attempt.event, on_failed=failed.append)
    assert outcome.status == "declined" and failed == [outcome]
    assert outcome.message == ("The payment for order SH-100001 was declined, so the order is still waiting for "
                               "payment and your cart is unchanged. You can try again with another card.")
    assert order_state(engine, number) == ("pending_payment", [])
    assert stock(engine, shop["tee"]) == 20
    with session_scope(engine) as session:
        assert cart_view(session, "chat-1").lines[0].quantity == 2
        record = session.get(PaymentSessionRecord, ps.id)
        assert (record.status, record.attempts, record.last_failure) == ("open", 1, attempt.message)
    # and another try with a good card works
    assert deliver(engine, card(engine, provider, ps.id, CARD_OK).event).status == "paid"
    assert stock(engine, shop["tee"]) == 18


@pytest.mark.parametrize("number, expiry, cvc, errors", [
    ("4111 1111 1111 1111", "12/30", "123",
     {"card_number": "Card not accepted in test mode. Use 4242 4242 4242 4242 for a successful payment or 4000 0000 "
                     "0000 0002 to see a declined one."}),
    ("4242 4242 4242 4241", "12/30", "123", {"card_number": "That card number isn't valid; please check it."}),
    ("", "12/30", "123", {"card_number": "Please enter the card number."}),
    ("4242-abc", "12/30", "123", {"card_number": "A card number has 12 to 19 digits."}),
    (CARD_OK, "05/24", "123", {"expiry": "This card has expired."}),
    (CARD_OK, "13/30", "123", {"expiry": "Enter the expiry date as MM/YY."}),
    (CARD_OK, "12/30", "12", {"cvc": "Enter the 3- or 4-digit security code (CVC)."}),
])
def test_invalid_card_input_is_refused_without_an_event(engine, shop, provider, number, expiry, cvc, errors):
    order_number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, order_number)
    attempt = card(engine, provider, ps.id, number, expiry, cvc)
    assert (attempt.outcome, dict(attempt.field_errors), attempt.event) == ("invalid", errors, None)
    assert order_state(engine, order_number) == ("pending_payment", [])


def test_card_numbers_are_never_stored(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, number)
    deliver(engine, card(engine, provider, ps.id, CARD_DECLINED).event)
    deliver(engine, card(engine, provider, ps.id, CARD_OK).event)
    everything = repr(snapshot(engine))
    for secret in ("4242424242424242", "4242 4242 4242 4242", "4000000000000002", "4000 0000 0000 0002"):
        assert secret not in everything
    assert "'4242'" in everything and "'0002'" not in everything


# -- things that go wrong -------------------------------------------------------------------------------

def test_stock_sold_out_before_the_payment_cancels_and_refunds(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["sneakers42"], 1), (shop["tee"], 3))
    ps = start(engine, provider, number)
    with session_scope(engine) as session:
        session.get(Variant, shop["tee"]).stock = 2  # somebody else bought the tees meanwhile
    failed = []
    outcome = deliver(engine, card(engine, provider, ps.id, CARD_OK).event, on_failed=failed.append)
    assert (outcome.status, outcome.refund_cents) == ("out_of_stock", 10260)
    assert outcome.message.startswith("Sorry, Everyday Tee (white / M) sold out just before your payment went "
                                      "through, so we've cancelled order SH-100001 and are refunding the full $102.60.")
    assert failed == [outcome]
    assert order_state(engine, number) == ("cancelled", [(10260, "pending")])
    # all or nothing: the sneakers taken first were put back; the tees never went below zero
    assert (stock(engine, shop["sneakers42"]), stock(engine, shop["tee"])) == (20, 2)
    with session_scope(engine) as session:
        assert session.get(PaymentSessionRecord, ps.id).status == "refunded"
        assert session.execute(select(Cart.status)).scalar_one() == "open"
        assert session.get(CheckoutOrder, session.execute(select(Order.id)).scalar_one()).stock_taken_at is None
        assert provider.hosted_page(session, ps.id, now=NOW).state == "refunded"


def test_money_for_a_cancelled_order_is_refunded(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, number)
    event = card(engine, provider, ps.id, CARD_OK).event  # paid at the gateway, webhook not yet in
    with session_scope(engine) as session:
        cancel_order(session, number)
    outcome = deliver(engine, event)
    assert (outcome.status, outcome.refund_cents) == ("not_payable", 2219)
    assert order_state(engine, number) == ("cancelled", [(2219, "pending")])
    assert stock(engine, shop["tee"]) == 20
    # the page of a cancelled order takes no card
    ps2_page = None
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        with pytest.raises(PaymentError) as caught:
            provider.create_session(order, now=NOW)
        assert caught.value.code == "not_payable"
        ps2_page = provider.hosted_page(session, ps.id, now=NOW)
    assert ps2_page.state == "refunded"


def test_an_amount_that_does_not_match_is_refunded_and_the_order_stays_pending(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, number)
    event = replace(card(engine, provider, ps.id, CARD_OK).event, amount_cents=100)
    outcome = deliver(engine, event)
    assert (outcome.status, outcome.refund_cents) == ("amount_mismatch", 100)
    assert order_state(engine, number) == ("pending_payment", [(100, "pending")])
    assert stock(engine, shop["tee"]) == 20


def test_an_event_for_an_unknown_payment_changes_no_order(engine, shop):
    outcome = deliver(engine, _event(payment_session_id="ps_test_nothing_here_at_all_1234"))
    assert outcome.status == "unknown"
    with session_scope(engine) as session:
        assert session.execute(select(PaymentEventRecord.outcome)).scalars().all() == ["unknown"]


def test_sessions_are_reused_and_expire(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    first = start(engine, provider, number)
    assert start(engine, provider, number).id == first.id
    with session_scope(engine) as session:
        page = provider.hosted_page(session, first.id, now=NOW)
        assert (page.state, page.order_number, page.total_cents) == ("open", number, 2219)
        assert [(l.label, l.quantity, l.total_cents) for l in page.lines] == [("Everyday Tee (white / M)", 1, 1500)]
        late = provider.hosted_page(session, first.id, now=NOW + timedelta(hours=1))
        assert late.state == "expired"
        assert provider.hosted_page(session, "ps_test_unknown_unknown_unknown", now=NOW).state == "missing"
        assert provider.hosted_page(session, "../etc/passwd", now=NOW).state == "missing"
    attempt = card(engine, provider, first.id, CARD_OK, now=NOW + timedelta(hours=2))
    assert attempt.outcome == "not_payable" and attempt.event is None
    assert attempt.message == ("This payment link has expired. Ask the assistant for a new one; your order and cart "
                               "are saved.")


def test_items_added_after_placing_move_to_a_fresh_cart_when_paid(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, number)
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["tee"], 1, now=NOW)
        add_item(session, "chat-1", shop["cream"], 1, now=NOW)
    assert deliver(engine, card(engine, provider, ps.id, CARD_OK).event).status == "paid"
    with session_scope(engine) as session:
        assert session.execute(select(Cart.status).order_by(Cart.id)).scalars().all() == ["checked_out", "open"]
        view = cart_view(session, "chat-1")
    assert [(l.product_title, l.quantity) for l in view.lines] == [("Everyday Tee", 1), ("Glow Face Cream", 1)]


def test_the_paid_hook_only_runs_for_a_committed_payment(engine, shop, provider):
    number = checkout(engine, "chat-1", (shop["tee"], 1))
    ps = start(engine, provider, number)
    event = card(engine, provider, ps.id, CARD_OK).event
    calls = []
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            handle_payment_event(session, event, now=NOW, on_paid=calls.append)
            raise RuntimeError("the unit of work fails after the event was handled")
    assert calls == [] and order_state(engine, number) == ("pending_payment", [])
    assert deliver(engine, event, on_paid=lambda outcome: 1 / 0).status == "paid"  # a failing hook is only logged
    assert order_state(engine, number) == ("paid", [])


def test_an_order_placed_outside_checkout_is_not_charged_stock_twice(engine, shop, provider):
    with session_scope(engine) as session:
        make_order(session, "SH-100001", [(session.get(Variant, shop["tee"]), 1)], status="pending_payment")
    ps = start(engine, provider, "SH-100001")
    assert deliver(engine, card(engine, provider, ps.id, CARD_OK).event).status == "paid"
    assert stock(engine, shop["tee"]) == 20  # shop.orders' convention: it held its unit since it was placed


# -- concurrency (row locks need PostgreSQL) -------------------------------------------------------------

def _last_jacket_race(engine, shop, provider):
    with session_scope(engine) as session:
        session.get(Variant, shop["jacket"]).stock = 1
    events = []
    for shopper in ("ann", "bob"):
        number = checkout(engine, f"chat-{shopper}", (shop["jacket"], 1), email=f"{shopper}@example.com")
        ps = start(engine, provider, number)
        events.append(card(engine, provider, ps.id, CARD_OK).event)
    return events


def test_two_payments_for_the_last_item_cannot_both_succeed(engine, backend, shop, provider):
    if backend != "postgresql":
        pytest.skip("concurrent writers with row locks: PostgreSQL")
    events = _last_jacket_race(engine, shop, provider)
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def pay(event):
        try:
            with session_scope(engine) as session:
                barrier.wait(10)
                results[event.order_number] = handle_payment_event(session, event, now=NOW).status
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pay, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results.values()) == ["out_of_stock", "paid"]
    assert stock(engine, shop["jacket"]) == 0
    with session_scope(engine) as session:
        assert sorted(session.execute(select(Order.status)).scalars()) == ["cancelled", "paid"]
        assert len(session.execute(select(Refund)).scalars().all()) == 1


def test_the_second_payment_waits_for_the_first_and_then_finds_no_stock(engine, backend, shop, provider):
    if backend != "postgresql":
        pytest.skip("concurrent writers with row locks: PostgreSQL")
    first_event, second_event = _last_jacket_race(engine, shop, provider)
    first_handled, release = threading.Event(), threading.Event()
    results = {}

    def first():
        with session_scope(engine) as session:
            results["first"] = handle_payment_event(session, first_event, now=NOW).status
            first_handled.set()
            release.wait(20)  # hold the transaction (and the row lock) open

    def second():
        first_handled.wait(20)
        with session_scope(engine) as session:
            results["second"] = handle_payment_event(session, second_event, now=NOW).status

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    assert first_handled.wait(20)
    time.sleep(0.5)
    assert b.is_alive() and "second" not in results  # blocked on the variant's row lock
    release.set()
    a.join(20)
    b.join(20)
    assert results == {"first": "paid", "second": "out_of_stock"}
    assert stock(engine, shop["jacket"]) == 0
