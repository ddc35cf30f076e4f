"""Checkout: requirements, the summary in exact cents, placing the order with every re-check, cancelling unpaid."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from shop.carts import add_item, attach_customer
from shop.checkout import (
    CheckoutOrder,
    CheckoutRefusal,
    cancel_order,
    checkout_requirements,
    checkout_summary,
    holds_stock,
    place_order,
)
from shop.db import session_scope
from shop.models import Cart, Customer, DiscountCode, Order, Variant
from shop.orders import price_lines
from shop.promotions import apply_code
from shop.verification import VerificationSession
from tests.unit.service_helpers import catalog, make_order, snapshot

NOW = datetime(2024, 6, 15, 12, 0)
DETAILS = dict(name="Sam Rivera", email="Sam@Example.com", address_line="742 Maple Street", city="Portland",
               postcode="97205", country="US", shipping_method="standard")


@pytest.fixture
def shop(engine):
    with session_scope(engine) as session:
        ids = {name: variant.id for name, variant in catalog(session).items()}
        session.add_all([
            DiscountCode(code="SAVE20", kind="percent", value=20, public=True, once_per_customer=False),
            DiscountCode(code="WELCOME10", kind="percent", value=10, public=True, once_per_customer=True),
        ])
    return ids


def fill(engine, session_id, *lines):
    with session_scope(engine) as session:
        for variant_id, quantity in lines:
            add_item(session, session_id, variant_id, quantity, now=NOW)


def refused(engine, call, code: str) -> CheckoutRefusal:
    before = snapshot(engine)
    with session_scope(engine) as session:
        with pytest.raises(CheckoutRefusal) as caught:
            call(session)
    assert caught.value.code == code, caught.value.message
    assert snapshot(engine) == before
    return caught.value


def stock(engine, variant_id):
    with session_scope(engine) as session:
        return session.get(Variant, variant_id).stock


def verify(engine, conversation_id, email):
    with session_scope(engine) as session:
        session.add(VerificationSession(conversation_id=conversation_id, verified_email=email, verified_at=NOW,
                                        verified_via="email_code", updated_at=NOW))


# -- what is missing ----------------------------------------------------------------------------------

def test_a_new_shopper_needs_everything_in_order(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        req = checkout_requirements(session, "c", now=NOW)
        assert req.missing == ("name", "email", "shipping_address", "shipping_method")
        assert req.message == "What name should go on the shipping label?" and not req.ready
        req = checkout_requirements(session, "c", "sam@example.com", details={"name": "Sam Rivera"}, now=NOW)
        assert req.missing == ("shipping_address", "shipping_method")
        assert req.message == "What's the shipping address (street, city, postcode and country)?"
        assert req.returning_customer is False
        req = checkout_requirements(session, "c", details=DETAILS, now=NOW)
        assert req.ready and req.missing == () and req.details.email == "sam@example.com"


@pytest.mark.parametrize("changes, field, message", [
    ({"country": "France"}, "shipping_address",
     "Sorry, we don't ship to France. We ship to the United States, Canada, the United Kingdom, Germany and the "
     "Netherlands."),
    ({"postcode": "ABC"}, "shipping_address", "A US ZIP code has five digits, like 97205 (or 97205-1234)."),
    ({"shipping_method": "overnight"}, "shipping_method", "We ship standard or express; which would you like?"),
    ({"email": "sam at example"}, "email",
     "That doesn't look like an email address. Please check it (like name@example.com)."),
    ({"name": "S"}, "name", "Please give the full name for the shipping label (2 to 160 characters)."),
])
def test_invalid_details_are_named(engine, shop, changes, field, message):
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        req = checkout_requirements(session, "c", details={**DETAILS, **changes}, now=NOW)
    assert req.problems == {field: message} and req.message == message and not req.ready
    error = refused(engine, lambda s: place_order(s, "c", {**DETAILS, **changes}, NOW), "invalid_details")
    assert error.message == message


def test_a_returning_customer_is_prefilled_only_when_verified(engine, shop):
    with session_scope(engine) as session:
        session.add(Customer(email="sam@example.com", first_name="Sam", last_name="Rivera",
                             address_line="742 Maple Street", city="Portland", postcode="97205", country="US"))
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        attach_customer(session, "c", "sam@example.com", now=NOW)
        req = checkout_requirements(session, "c", now=NOW)  # the email comes from the cart's customer
    assert req.returning_customer and req.needs_verification and req.prefilled == ()
    assert req.missing == ("name", "shipping_address", "shipping_method")
    assert req.details.address_line == ""
    verify(engine, "c", "sam@example.com")
    with session_scope(engine) as session:
        req = checkout_requirements(session, "c", "SAM@example.com", now=NOW)
    assert req.prefilled == ("name", "shipping_address") and req.missing == ("shipping_method",)
    assert (req.details.name, req.details.address_line, req.details.city, req.details.postcode, req.details.country) \
        == ("Sam Rivera", "742 Maple Street", "Portland", "97205", "US")
    assert req.message == "Standard or express shipping?" and not req.needs_verification


# -- the summary --------------------------------------------------------------------------------------

def test_summary_costs_by_method_with_the_free_shipping_threshold(engine, shop):
    fill(engine, "c", (shop["tee"], 5))  # exactly 75.00
    with session_scope(engine) as session:
        summary = checkout_summary(session, "c", "standard", now=NOW)
        assert [(o.method, o.cents) for o in summary.shipping_options] == [("standard", 0), ("express", 1299)]
        assert (summary.subtotal_cents, summary.discount_cents, summary.shipping_cents, summary.tax_cents,
                summary.total_cents) == (7500, 0, 0, 600, 8100)
        assert summary.free_shipping_over_cents == 7500 and summary.ready
        apply_code(session, "c", "SAVE20", NOW)
        summary = checkout_summary(session, "c", "standard", now=NOW)
        # 75.00 - 15.00 = 60.00: under the threshold after the discount, so standard shipping is charged
        assert (summary.subtotal_cents, summary.discount_cents, summary.shipping_cents, summary.tax_cents,
                summary.total_cents) == (7500, 1500, 599, 480, 7079)
        express = checkout_summary(session, "c", "Express", now=NOW)
        assert (express.shipping_cents, express.total_cents) == (1299, 7779)
        assert "Shipping options: Standard $5.99, Express $12.99." in express.text()


def test_summary_lists_what_blocks_the_order(engine, shop):
    fill(engine, "c", (shop["tee"], 2))
    with session_scope(engine) as session:
        session.get(Variant, shop["tee"]).stock = 1
    with session_scope(engine) as session:
        summary = checkout_summary(session, "c", now=NOW)
        assert summary.problems == ("Only 1 left in stock.",) and not summary.ready
        assert checkout_summary(session, "nobody", now=NOW).problems == ("Your cart is empty.",)


# -- placing the order --------------------------------------------------------------------------------

def test_place_order_creates_one_pending_order_and_takes_no_stock(engine, shop):
    fill(engine, "chat-1", (shop["sneakers42"], 1), (shop["tee"], 2))
    with session_scope(engine) as session:
        apply_code(session, "chat-1", "SAVE20", NOW)
        summary = checkout_summary(session, "chat-1", "express", now=NOW)
        order = place_order(session, "chat-1", {**DETAILS, "shipping_method": "express"}, NOW)
        assert order.number == "SH-100001"
        # the summary and the order agree, and so does shop.orders.price_lines on the saved order
        assert (order.subtotal_cents, order.discount_cents, order.shipping_cents, order.tax_cents, order.total_cents) \
            == (summary.subtotal_cents, summary.discount_cents, summary.shipping_cents, summary.tax_cents,
                summary.total_cents) == (8000, 1600, 1299, 512, 8211)
        assert price_lines(session, order, {i.id: i.quantity for i in order.items}).total_cents == 8211
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.status, order.source, order.conversation_id, order.email, order.shipping_method) == (
            "pending_payment", "chat", "chat-1", "sam@example.com", "express")
        assert (order.shipping_name, order.shipping_address, order.shipping_city, order.shipping_postcode,
                order.shipping_country) == ("Sam Rivera", "742 Maple Street", "Portland", "97205", "US")
        assert [(i.product_title, i.variant_label, i.quantity, i.unit_price_cents) for i in order.items] == [
            ("Canvas Sneakers", "red / 42", 1, 5000), ("Everyday Tee", "white / M", 2, 1500)]
        assert session.execute(select(DiscountCode.times_used).where(DiscountCode.code == "SAVE20")).scalar_one() == 0
        assert session.execute(select(Cart.status)).scalar_one() == "open"  # checked out only when paid
        customer = session.execute(select(Customer)).scalar_one()
        assert (order.customer_id, customer.first_name, customer.last_name, customer.postcode) == (
            customer.id, "Sam", "Rivera", "97205")
        assert session.get(CheckoutOrder, order.id).stock_taken_at is None
        assert holds_stock(session, order) is False
    assert (stock(engine, shop["sneakers42"]), stock(engine, shop["tee"])) == (20, 20)


def test_an_unverified_checkout_never_edits_an_existing_customers_record(engine, shop):
    with session_scope(engine) as session:
        session.add(Customer(email="sam@example.com", created_at=NOW - timedelta(days=300)))
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        order = place_order(session, "c", {**DETAILS, "name": "Mallory Fake", "address_line": "1 Elsewhere Rd"}, NOW)
        assert order.shipping_name == "Mallory Fake" and order.customer.email == "sam@example.com"
    with session_scope(engine) as session:
        customer = session.execute(select(Customer)).scalar_one()
        assert (customer.first_name, customer.address_line) == ("", "")


def test_placing_twice_returns_the_same_order_and_a_changed_cart_replaces_it(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        first = place_order(session, "c", DETAILS, NOW).number
    with session_scope(engine) as session:
        assert place_order(session, "c", DETAILS, NOW).number == first
    fill(engine, "c", (shop["cream"], 1))
    with session_scope(engine) as session:
        second = place_order(session, "c", DETAILS, NOW).number
    assert (first, second) == ("SH-100001", "SH-100002")
    with session_scope(engine) as session:
        statuses = dict(session.execute(select(Order.number, Order.status)).all())
    assert statuses == {"SH-100001": "cancelled", "SH-100002": "pending_payment"}
    assert stock(engine, shop["tee"]) == 20


def test_order_numbers_continue_after_the_highest(engine, shop):
    with session_scope(engine) as session:
        tee = session.get(Variant, shop["tee"])
        make_order(session, "SH-999999", [(tee, 1)], status="delivered")
        make_order(session, "SH-100500", [(tee, 1)], status="delivered")
    fill(engine, "c", (shop["tee"], 1))
    with session_scope(engine) as session:
        assert place_order(session, "c", DETAILS, NOW).number == "SH-1000000"


def test_refusals_change_nothing(engine, shop):
    error = refused(engine, lambda s: place_order(s, "c", DETAILS, NOW), "empty_cart")
    assert error.message == "Your cart is empty, so there's nothing to order yet."
    fill(engine, "c", (shop["tee"], 1))
    error = refused(engine, lambda s: place_order(s, "c", {**DETAILS, "city": "", "shipping_method": ""}, NOW),
                    "missing_details")
    assert error.details == {"missing": ["shipping_address", "shipping_method"]}


def test_a_price_change_since_adding_needs_the_new_total_confirmed(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 1), (shop["tee"], 1))
    with session_scope(engine) as session:
        session.get(Variant, shop["sneakers42"]).price_cents = 5500
    error = refused(engine, lambda s: place_order(s, "c", DETAILS, NOW), "price_changed")
    # 55.00 + 15.00 = 70.00, shipping 5.99, tax 5.60
    assert error.message == ("A price changed since you added it: Canvas Sneakers (red / 42) is now $55.00 (was "
                             "$50.00). Your new total is $81.59. Shall I place the order at that total?")
    assert error.details["new_total_cents"] == 8159
    error = refused(engine, lambda s: place_order(s, "c", {**DETAILS, "confirmed_total_cents": 7619}, NOW),
                    "price_changed")
    with session_scope(engine) as session:
        order = place_order(session, "c", {**DETAILS, "confirmed_total_cents": "8159"}, NOW)
        assert order.total_cents == 8159
        assert [i.unit_price_cents for i in order.items] == [5500, 1500]


def test_a_confirmed_total_that_no_longer_matches_is_refused(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    error = refused(engine, lambda s: place_order(s, "c", {**DETAILS, "confirmed_total_cents": 2000}, NOW),
                    "total_changed")
    assert error.message == ("Your total is now $22.19 (you confirmed $20.00). Shall I place the order at the new "
                             "total?")


def test_an_item_that_sold_out_during_checkout_is_named(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 1), (shop["tee"], 2))
    with session_scope(engine) as session:
        session.get(Variant, shop["tee"]).stock = 1
    error = refused(engine, lambda s: place_order(s, "c", DETAILS, NOW), "not_enough_stock")
    assert error.message == "Sorry, only 1 of Everyday Tee (white / M) is left; you have 2 in your cart."
    with session_scope(engine) as session:
        session.get(Variant, shop["tee"]).stock = 0
    error = refused(engine, lambda s: place_order(s, "c", DETAILS, NOW), "sold_out")
    assert error.message == ("Sorry, Everyday Tee (white / M) just sold out. Please remove it from your cart to order "
                             "the rest.")
    assert error.details["item"] == "Everyday Tee (white / M)"


def test_a_code_already_used_by_this_email_is_caught_at_checkout(engine, shop):
    with session_scope(engine) as session:
        welcome = session.execute(select(DiscountCode).where(DiscountCode.code == "WELCOME10")).scalar_one()
        make_order(session, "SH-100001", [(session.get(Variant, shop["tee"]), 1)], status="delivered",
                   email="sam@example.com", discount_code=welcome, discount_cents=150)
    fill(engine, "c", (shop["tee"], 2))
    with session_scope(engine) as session:
        assert apply_code(session, "c", "WELCOME10", NOW).ok  # no email known yet
    error = refused(engine, lambda s: place_order(s, "c", DETAILS, NOW), "discount_invalid")
    assert error.message == ("You've already used WELCOME10 on order SH-100001; it can be used once per customer. "
                             "Without the code your total would be $38.39. Shall I remove the code?")
    assert (error.details["reason"], error.details["new_total_cents"]) == ("already_used", 3839)


# -- cancelling an unpaid checkout order -------------------------------------------------------------

def test_cancelling_an_unpaid_checkout_order_returns_no_stock_it_never_took(engine, shop):
    fill(engine, "c", (shop["jacket"], 2))
    with session_scope(engine) as session:
        apply_code(session, "c", "SAVE20", NOW)
        place_order(session, "c", DETAILS, NOW)
    assert stock(engine, shop["jacket"]) == 2
    with session_scope(engine) as session:
        result = cancel_order(session, "sh100001", owner_email="sam@example.com")
    assert (result.order_number, result.refund_cents, result.refund_id) == ("SH-100001", 0, None)
    assert result.message == "Order SH-100001 is cancelled. It hadn't been paid, so nothing was charged."
    assert stock(engine, shop["jacket"]) == 2  # not 4
    with session_scope(engine) as session:
        assert session.execute(select(Order.status)).scalar_one() == "cancelled"
        assert session.execute(select(DiscountCode.times_used).where(DiscountCode.code == "SAVE20")).scalar_one() == 0
        assert session.execute(select(Cart.status)).scalar_one() == "open"


def test_orders_placed_elsewhere_keep_the_orders_module_convention(engine, shop):
    """A pending order not placed through shop.checkout holds its stock (shop.orders): cancel puts it back."""
    with session_scope(engine) as session:
        make_order(session, "SH-100001", [(session.get(Variant, shop["tee"]), 1)], status="pending_payment")
        assert holds_stock(session, session.execute(select(Order)).scalar_one()) is True
    with session_scope(engine) as session:
        cancel_order(session, "SH-100001")
    assert stock(engine, shop["tee"]) == 21
