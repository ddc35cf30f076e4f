"""Checkout in the chat against a real SQLite shop: the questions asked, the summary, and the order placed."""
import asyncio
from datetime import datetime, timedelta

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.cart import ActionAddToCart
from actions.checkout import (
    ActionAskCartCheckoutShippingMethod,
    ActionCheckoutSummary,
    ActionPlaceOrder,
    ActionStartCheckout,
    ValidateCartCheckoutForm,
    parse_address,
)
from actions.payment_confirmation import ActionConfirmPayment
from actions.promotions import ActionApplyDiscount
from shop.db import session_scope
from shop.models import Cart, Customer, DiscountCode, Order, OrderItem, Variant
from shop.payments import PaymentEvent, PaymentSessionRecord, handle_payment_event
from shop.promotions import IssuedOffer
from shop.verification import verify_by_order_details
from tests.actions.trackers import entity, tracker_for

DETAILS = {"cart_checkout_name": "Sam Rivera", "cart_checkout_email": "sam@example.com",
           "cart_checkout_address": "742 Maple Street, Portland, 97205, US",
           "cart_checkout_shipping_method": "standard"}


def run(action, tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def validate(method, value, slots=None):
    dispatcher = CollectingDispatcher()
    result = asyncio.run(getattr(ValidateCartCheckoutForm(), f"validate_{method}")(
        value, dispatcher, tracker_for(str(value), "inform", slots=slots or {}), {}))
    return result, [m["text"] for m in dispatcher.messages]


def fill_cart(handle="harbor-denim-jacket", quantity="1"):
    run(ActionAddToCart(), tracker_for("add", "add_to_cart", [entity("product_handle", handle),
                                                              entity("quantity", quantity)]))


def summary(**extra):
    return run(ActionCheckoutSummary(), tracker_for("standard", "inform", slots={**DETAILS, **extra}))


def place(total):
    return run(ActionPlaceOrder(), tracker_for("yes", "affirm", slots={
        **DETAILS, "cart_checkout_status": "awaiting_confirmation", "cart_checkout_total": total}))


def orders(engine):
    with session_scope(engine) as session:
        return [(o.number, o.status, o.total_cents, o.conversation_id)
                for o in session.execute(select(Order).order_by(Order.id)).scalars()]


def stock(engine, title="Harbor Denim Jacket"):
    with session_scope(engine) as session:
        return sum(v.stock for v in session.execute(select(Variant)).scalars() if v.product.title == title)


def test_checking_out_an_empty_cart_stops(shop_engine):
    messages, slots = run(ActionStartCheckout(), tracker_for("checkout", "checkout"))
    assert messages[0]["text"].startswith("Your cart is empty, so there's nothing to check out yet.")
    assert slots["cart_checkout_status"] == "blocked"


def test_a_new_shopper_is_asked_everything_and_nothing_is_prefilled(shop_engine):
    fill_cart()
    messages, slots = run(ActionStartCheckout(), tracker_for("checkout", "checkout"))
    assert slots == {"cart_checkout_status": "collecting", "cart_checkout_total": None}
    assert messages[0]["text"].startswith("Let's check out.")


def test_a_known_but_invalid_detail_is_cleared_so_the_form_asks_for_it(shop_engine):
    fill_cart()
    _, slots = run(ActionStartCheckout(), tracker_for("checkout", "checkout", slots={
        "cart_checkout_email": "sam@nowhere", "cart_checkout_shipping_method": "express"}))
    assert slots["cart_checkout_email"] is None
    assert "cart_checkout_shipping_method" not in slots  # valid, kept


def test_a_verified_returning_customer_is_not_asked_again(shop_engine):
    with session_scope(shop_engine) as session:
        customer = Customer(email="kim@example.com", first_name="Kim", last_name="Lee", address_line="1 Elm Road",
                            city="Austin", postcode="73301", country="US", preferences={})
        session.add(customer)
        session.flush()
        variant = session.execute(select(Variant)).scalars().first()
        session.add(Order(number="SH-900001", customer=customer, email=customer.email, status="delivered",
                          shipping_name="Kim Lee", shipping_postcode="73301", total_cents=1000,
                          items=[OrderItem(variant_id=variant.id, product_title="x", quantity=1,
                                           unit_price_cents=1000)]))
        session.flush()
        assert verify_by_order_details(session, "shopper-1", "SH-900001", "kim@example.com").verified
    fill_cart()
    messages, slots = run(ActionStartCheckout(), tracker_for("checkout", "checkout",
                                                             slots={"cart_checkout_email": "kim@example.com"}))
    assert slots["cart_checkout_name"] == "Kim Lee"
    assert slots["cart_checkout_address"] == "1 Elm Road, Austin, 73301, US"
    assert "cart_checkout_shipping_method" not in slots  # the one thing still to ask
    assert messages[0]["text"] == "Welcome back! I'll ship to Kim Lee, 1 Elm Road, Austin, 73301, US as last time."


@pytest.mark.parametrize("typed, parsed", [
    ("742 Maple Street, Portland, OR 97205", ("742 Maple Street", "Portland", "97205", "US")),
    ("742 Maple Street, Portland 97205, USA", ("742 Maple Street", "Portland", "97205", "US")),
    ("Hauptstr. 5, 10115 Berlin, Germany", ("Hauptstr. 5", "Berlin", "10115", "DE")),
    ("10 Downing Street, London, SW1A 2AA, UK", ("10 Downing Street", "London", "SW1A 2AA", "GB")),
])
def test_addresses_are_understood_as_shoppers_write_them(typed, parsed):
    address = parse_address(typed)
    assert (address["address_line"], address["city"], address["postcode"], address["country"]) == parsed


def test_bad_details_are_asked_again_with_the_reason(shop_engine):
    fill_cart()
    assert validate("cart_checkout_address", "somewhere nice") == (
        {"cart_checkout_address": None},
        ["I need the street, city, postcode and country, separated by commas, like: 742 Maple Street, Portland, "
         "97205, US."])
    result, said = validate("cart_checkout_address", "1 Sakura St, Tokyo, 100-0001, Japan")
    assert result == {"cart_checkout_address": None}
    assert said == ["I need the street, city, postcode and country, separated by commas, like: 742 Maple Street, "
                    "Portland, 97205, US."]
    assert validate("cart_checkout_email", "sam at example") == (
        {"cart_checkout_email": None},
        ["That doesn't look like an email address. Please check it (like name@example.com)."])
    assert validate("cart_checkout_shipping_method", "by pigeon") == (
        {"cart_checkout_shipping_method": None}, ["We ship standard or express; which would you like?"])
    assert validate("cart_checkout_shipping_method", "express please")[0] == {"cart_checkout_shipping_method": "express"}
    assert validate("cart_checkout_name", "sam@example.com")[0] == {"cart_checkout_name": None}


def test_the_email_ties_the_cart_to_the_customer(shop_engine):
    fill_cart()
    assert validate("cart_checkout_email", " Sam@Example.COM ")[0] == {"cart_checkout_email": "sam@example.com"}
    with session_scope(shop_engine) as session:
        cart = session.execute(select(Cart).where(Cart.session_id == "shopper-1")).scalar_one()
        assert session.get(Customer, cart.customer_id).email == "sam@example.com"


def test_the_shipping_question_offers_the_prices_for_this_cart(shop_engine):
    fill_cart("summit-pro-sneaker")
    messages, _ = run(ActionAskCartCheckoutShippingMethod(), tracker_for("", "checkout"))
    assert messages[0]["text"] == "Which shipping would you like: Standard (free) or Express ($12.99)?"


def test_the_summary_shows_every_cost_asks_to_confirm_and_offers_a_first_order_code_once(shop_engine):
    fill_cart()
    messages, slots = summary()
    texts = [m["text"] for m in messages]
    assert "1 x Harbor Denim Jacket (blue / M) at $89.00 = $89.00" in texts[0]
    assert "Shipping (Standard): free" in texts[0]
    assert "Ship to: Sam Rivera, 742 Maple Street, Portland, 97205, US" in texts[0]
    assert texts[1].startswith("Here's your personal code FIRST")
    assert texts[2].startswith(f"Shall I place the order for ")
    assert slots["cart_checkout_status"] == "awaiting_confirmation"
    total = slots["cart_checkout_total"]
    assert f"${total / 100:.2f}" in texts[0]

    again, _ = summary()
    assert not any("personal code" in m["text"] for m in again)
    with session_scope(shop_engine) as session:
        assert len(session.execute(select(IssuedOffer)).scalars().all()) == 1


def test_yes_places_a_pending_order_and_gives_the_payment_link(shop_engine):
    fill_cart()
    _, slots = summary()
    messages, placed = place(slots["cart_checkout_total"])

    number, status, total, conversation = orders(shop_engine)[0]
    assert (status, total, conversation) == ("pending_payment", slots["cart_checkout_total"], "shopper-1")
    assert messages[0]["text"].startswith(f"Order {number} is placed and waiting for payment")
    with session_scope(shop_engine) as session:
        payment = session.execute(select(PaymentSessionRecord)).scalar_one()
        assert f"http://shop.test/pay/{payment.id}" in messages[0]["text"]
        assert session.execute(select(Cart.status)).scalar_one() == "open"  # kept until paid
    assert placed["cart_checkout_status"] == "placed"
    assert stock(shop_engine) == 5  # nothing leaves the shelf before the payment


def test_the_web_chat_gets_a_pay_now_button(shop_engine):
    fill_cart()
    _, slots = summary()
    messages, _ = run(ActionPlaceOrder(), tracker_for("yes", "affirm", channel="socketio", slots={
        **DETAILS, "cart_checkout_status": "awaiting_confirmation", "cart_checkout_total": slots["cart_checkout_total"]}))
    button = messages[0]["buttons"][0]
    assert button["title"] == "Pay now" and button["type"] == "web_url"
    assert button["url"].startswith("http://shop.test/pay/ps_test_")


def test_sold_out_during_checkout_places_nothing(shop_engine):
    fill_cart()
    _, slots = summary()
    with session_scope(shop_engine) as session:
        for variant in session.execute(select(Variant)).scalars():
            if variant.product.title == "Harbor Denim Jacket":
                variant.stock = 0
    messages, placed = place(slots["cart_checkout_total"])
    assert messages[0]["text"] == ("Sorry, Harbor Denim Jacket (blue / M) just sold out. Please remove it from your "
                                   "cart to order the rest.")
    assert placed["cart_checkout_status"] == "blocked"
    assert orders(shop_engine) == []


def test_a_price_change_after_the_summary_asks_again_with_the_new_total(shop_engine):
    fill_cart()
    _, slots = summary()
    with session_scope(shop_engine) as session:
        for variant in session.execute(select(Variant)).scalars():
            if variant.product.title == "Harbor Denim Jacket":
                variant.price_cents = 9900
    messages, asked = place(slots["cart_checkout_total"])
    assert messages[0]["text"].startswith("A price changed since you added it: Harbor Denim Jacket (blue / M) is now "
                                          "$99.00 (was $89.00). Your new total is $")
    assert orders(shop_engine) == []
    new_total = asked["cart_checkout_total"]
    assert new_total > slots["cart_checkout_total"]

    place(new_total)
    assert [(status, total) for _, status, total, _ in orders(shop_engine)] == [("pending_payment", new_total)]


def test_a_code_that_expired_before_ordering_is_taken_off_and_the_new_total_asked(shop_engine):
    with session_scope(shop_engine) as session:
        session.add(DiscountCode(code="SAVE20", kind="percent", value=20, public=True,
                                 ends_at=datetime.utcnow() + timedelta(days=1)))
    fill_cart()
    run(ActionApplyDiscount(), tracker_for("apply SAVE20", "apply_discount", [entity("discount_code", "SAVE20")]))
    _, slots = summary()
    with session_scope(shop_engine) as session:
        session.execute(select(DiscountCode).where(DiscountCode.code == "SAVE20")).scalar_one().ends_at = datetime.utcnow() - timedelta(minutes=1)
    messages, asked = place(slots["cart_checkout_total"])
    assert messages[0]["text"].startswith("SAVE20 expired on")
    assert "I've taken the code off: your total is now" in messages[0]["text"]
    assert asked["cart_checkout_total"] > slots["cart_checkout_total"]
    assert orders(shop_engine) == []


def test_place_order_without_the_summary_asks_to_check_out_first(shop_engine):
    fill_cart()
    messages, slots = run(ActionPlaceOrder(), tracker_for("place the order", "place_order", slots=DETAILS))
    assert messages[0]["text"].startswith("Before I place an order I need your details and your OK on the total.")
    assert orders(shop_engine) == []


def test_the_payment_confirmation_names_the_order_and_the_total(shop_engine):
    fill_cart()
    _, slots = summary()
    place(slots["cart_checkout_total"])
    number = orders(shop_engine)[0][0]
    with session_scope(shop_engine) as session:
        payment = session.execute(select(PaymentSessionRecord)).scalar_one()
        handle_payment_event(session, PaymentEvent(id="evt_1", type="payment.succeeded", created=0,
                                                   payment_session_id=payment.id, order_number=number,
                                                   amount_cents=payment.amount_cents))
    messages, _ = run(ActionConfirmPayment(), tracker_for("", "payment_confirmed", [entity("order_number", number)]))
    total = slots["cart_checkout_total"] / 100
    assert messages[0]["text"] == (f"Payment received: your order {number} is confirmed. Total paid: ${total:.2f}. "
                                   "A confirmation is on its way to sam@example.com.")
    assert stock(shop_engine) == 4

    stranger = tracker_for("", "payment_confirmed", [entity("order_number", number)])
    stranger.sender_id = "someone-else"
    assert run(ActionConfirmPayment(), stranger)[0][0]["text"] == "I don't see an order from this chat yet."


def test_an_unpaid_order_is_reported_as_waiting(shop_engine):
    fill_cart()
    _, slots = summary()
    place(slots["cart_checkout_total"])
    number = orders(shop_engine)[0][0]
    messages, _ = run(ActionConfirmPayment(), tracker_for("did my payment go through", "payment_confirmed"))
    assert messages[0]["text"].startswith(f"Order {number} is still waiting for payment.")
