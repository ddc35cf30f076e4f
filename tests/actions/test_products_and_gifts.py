import asyncio
from datetime import datetime
from pathlib import Path

import yaml

from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.products import ActionCheckAvailability, ActionProductDetails, ActionShowReviews
from actions.recommend import ActionRecommendProducts, ActionSetPreference, ValidateGiftQuizForm
from shop.db import session_scope
from shop.models import Customer, Order, OrderItem, Product, Variant
from shop.verification import VerificationSession
from tests.actions.trackers import entity, run, tracker_for

DOMAIN = yaml.safe_load((Path(__file__).resolve().parents[2] / "domain.yml").read_text())
SHOWN = ["court-classic-sneaker", "blaze-runner-sneaker", "summit-pro-sneaker"]


def all_text(messages):
    return "\n".join(m.get("text") or "" for m in messages)


def bought_together(engine, *handles, times=2):
    with session_scope(engine) as session:
        variants = [
            session.execute(select(Variant).join(Product).where(Product.handle == h)).scalars().first()
            for h in handles
        ]
        for number in range(times):
            order = Order(number=f"SH-9{number:05d}", email="a@example.com", status="delivered",
                          placed_at=datetime(2026, 1, 1))
            for variant in variants:
                order.items.append(OrderItem(variant_id=variant.id, product_title="x", quantity=1,
                                             unit_price_cents=variant.price_cents))
            session.add(order)


def test_details_of_the_second_one_shown_with_stock_reviews_delivery_and_cross_sell(shop_engine):
    bought_together(shop_engine, "blaze-runner-sneaker", "harbor-denim-jacket")
    tracker = tracker_for("tell me more about the second one", "product_details",
                          [entity("position", "2")], slots={"shown_products": SHOWN})
    messages, events = run(ActionProductDetails(), tracker)
    text = all_text(messages)
    assert "Blaze Runner Sneaker by Stride: $74.99 - $79.99." in text
    assert "In stock: red (42); white (42)." in text
    assert "Rated 4.5/5 from 2 reviews" in text
    assert "with standard shipping" in text
    assert "http://shop.test/products/blaze-runner-sneaker" in text
    assert "Frequently bought together: Harbor Denim Jacket ($89.00)" in text
    assert events == [{"event": "slot", "timestamp": None, "name": "current_product",
                       "value": "blaze-runner-sneaker"}]


def test_a_product_described_by_colour_and_kind_is_found_among_those_shown(shop_engine):
    tracker = tracker_for("what about the white one", "product_details",
                          [entity("color", "white")], slots={"shown_products": SHOWN})
    messages, _ = run(ActionProductDetails(), tracker)
    assert all_text(messages).startswith("Blaze Runner Sneaker")


def test_an_unclear_reference_asks_which_one(shop_engine):
    tracker = tracker_for("tell me more", "product_details", slots={"shown_products": SHOWN})
    messages, events = run(ActionProductDetails(), tracker)
    assert messages[0]["text"] == "Which one do you mean?"
    assert [b["title"] for b in messages[0]["buttons"]] == [
        "Court Classic Sneaker", "Blaze Runner Sneaker", "Summit Pro Sneaker"]
    assert events == []


def test_a_sold_out_size_offers_what_is_in_stock(shop_engine):
    tracker = tracker_for("do you have it in red size 43", "check_availability",
                          [entity("color", "red"), entity("size", "43")],
                          slots={"shown_products": SHOWN, "current_product": "blaze-runner-sneaker"})
    messages, _ = run(ActionCheckAvailability(), tracker)
    assert messages[0]["text"] == (
        "Sorry, the Blaze Runner Sneaker in red size 43 is sold out right now (other sizes in stock: 42).")


def test_an_available_variant_says_how_few_are_left(shop_engine):
    tracker = tracker_for("is the first one available in 41", "check_availability",
                          [entity("position", "1"), entity("size", "41")], slots={"shown_products": SHOWN})
    messages, _ = run(ActionCheckAvailability(), tracker)
    assert messages[0]["text"].startswith("Yes! The Court Classic Sneaker in size 41 is in stock (only 1 left).")


def test_reviews_show_the_rating_spread(shop_engine):
    tracker = tracker_for("reviews?", "ask_reviews", slots={"current_product": "blaze-runner-sneaker"})
    messages, _ = run(ActionShowReviews(), tracker)
    assert messages[0]["text"].startswith(
        "The Blaze Runner Sneaker is rated 4.5/5 from 2 reviews (5★ 1, 4★ 1, 3★ 0, 2★ 0, 1★ 0).")


def test_gift_budget_must_be_an_amount():
    dispatcher = CollectingDispatcher()
    result = asyncio.run(ValidateGiftQuizForm().validate_gift_budget(
        "lots", dispatcher, tracker_for("lots", "inform"), {}))
    assert result == {"gift_budget": None}
    assert "amount" in dispatcher.messages[0]["text"]


def test_gift_quiz_answers_become_reasoned_picks_within_budget(shop_engine):
    tracker = tracker_for("under $100", "inform", [entity("price_max", "$100")],
                          slots={"recipient": "friend", "occasion": "any", "style": "any", "gift_budget": "$100"})
    messages, events = run(ActionRecommendProducts(), tracker)
    text = all_text(messages)
    assert text.startswith("Here are my")
    assert "Summit Pro Sneaker" not in text  # $129 is over the budget
    slots = {e["name"]: e["value"] for e in events}
    assert slots["recipient"] is None and slots["gift_budget"] is None
    assert slots["shown_products"]


def test_preferences_are_kept_for_the_conversation(shop_engine):
    tracker = tracker_for("I'm a size M and I don't like yellow", "set_preference",
                          [entity("size", "M"), entity("color", "yellow", role="disliked")])
    messages, events = run(ActionSetPreference(), tracker)
    assert messages[0]["text"] == (
        "Got it: you wear size M and you would rather avoid yellow. I'll keep that in mind for my suggestions.")
    assert events[0]["value"] == {"size": "M", "disliked_colors": ["yellow"], "liked_colors": []}


def verified_customer(engine, sender="shopper-1", email="sam@example.com", preferences=None):
    """A customer with one past order (Blaze Runner), whose conversation proved who they are."""
    with session_scope(engine) as session:
        sam = Customer(email=email, first_name="Sam", preferences=preferences or {})
        session.add(sam)
        blaze = session.execute(select(Variant).join(Product).where(Product.handle == "blaze-runner-sneaker")
                                ).scalars().first()
        order = Order(number="SH-800001", email=email, customer=sam, status="delivered",
                      placed_at=datetime(2026, 1, 5))
        order.items.append(OrderItem(variant_id=blaze.id, product_title="Blaze Runner Sneaker", quantity=1,
                                     unit_price_cents=blaze.price_cents))
        session.add(order)
        session.add(VerificationSession(conversation_id=sender, verified_email=email,
                                        verified_at=datetime.utcnow(), verified_via="email_code"))


def test_a_verified_customer_asking_for_themselves_skips_the_quiz_and_gets_picks_from_their_orders(shop_engine):
    verified_customer(shop_engine, preferences={"shoe_size": "42"})
    for_me = tracker_for("recommend something for me", "recommend", [entity("recipient", "myself")],
                         slots={"recipient": "myself"})
    required = asyncio.run(ValidateGiftQuizForm().required_slots(
        ["recipient", "occasion", "style", "gift_budget"], CollectingDispatcher(), for_me, {}))
    assert required == ["recipient"]

    messages, events = run(ActionRecommendProducts(), for_me)
    text = all_text(messages)
    assert text.startswith("Here are") and "picks for you, from your orders" in text
    assert "Blaze Runner Sneaker" not in text  # never what they already bought
    assert "Sneaker" in text  # they shop sneakers in size 42
    assert {e["name"]: e["value"] for e in events}["shown_products"]


def quiz_opened_by(text):
    """The gift quiz's first validation, as Rasa runs it when "recommend" opens the form: (questions, slots)."""
    tracker = tracker_for(text, "recommend", active_loop={"name": "gift_quiz_form"})
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ValidateGiftQuizForm().run(dispatcher, tracker, DOMAIN))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def test_for_me_without_a_tagged_recipient_still_gives_a_verified_customer_their_picks_at_once(shop_engine):
    verified_customer(shop_engine)
    _, slots = quiz_opened_by("recommend something for me")
    assert slots["recipient"] == "myself"
    assert slots.get("requested_slot") is None  # the form is done: no quiz question


def test_a_gift_request_naming_someone_else_starts_the_quiz(shop_engine):
    verified_customer(shop_engine)
    _, slots = quiz_opened_by("something for me to give my mom")
    assert "recipient" not in slots


def test_a_shopper_not_verified_takes_the_quiz_even_for_themselves(shop_engine):
    for_me = tracker_for("recommend something for me", "recommend", [entity("recipient", "myself")],
                         slots={"recipient": "myself"})
    required = asyncio.run(ValidateGiftQuizForm().required_slots(
        ["recipient", "occasion", "style", "gift_budget"], CollectingDispatcher(), for_me, {}))
    assert required == ["recipient", "occasion", "style", "gift_budget"]


def test_a_verified_customers_preferences_are_saved_to_their_account(shop_engine):
    verified_customer(shop_engine)
    tracker = tracker_for("I'm a size M and I don't like yellow", "set_preference",
                          [entity("size", "M"), entity("color", "yellow", role="disliked")])
    messages, _ = run(ActionSetPreference(), tracker)
    assert messages[0]["text"].endswith("and saved it to your account for next time.")
    with session_scope(shop_engine) as session:
        stored = session.execute(select(Customer.preferences).where(Customer.email == "sam@example.com")).scalar_one()
    assert stored["size"] == "M" and stored["disliked_colors"] == ["yellow"]
