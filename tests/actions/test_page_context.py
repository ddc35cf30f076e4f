"""action_page_greeting on a real SQLite shop (tests/actions/conftest.py) with real rasa_sdk trackers."""
import asyncio
import json

from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.page_context import ActionPageGreeting
from actions.products import ActionCheckAvailability, delivery_text
from shop.carts import add_item
from shop.db import session_scope
from shop.models import Product, Variant
from shop.products import delivery_estimate
from tests.actions.trackers import entity, tracker_for

GREETING_START = "Hi, welcome to Northwind Outfitters!"


def open_chat(*entities, sender="shopper-1"):
    entities = list(entities)
    payload = "/page_context" + json.dumps({e["entity"]: e["value"] for e in entities})
    tracker = tracker_for(payload, "page_context", entities, channel="socketio")
    tracker.sender_id = sender
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionPageGreeting().run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def test_a_product_page_opens_with_sizes_per_colour_delivery_and_an_offer_to_help(shop_engine, monkeypatch):
    monkeypatch.delenv("SHOP_NAME", raising=False)
    messages, events = open_chat(entity("page_type", "product"), entity("product_handle", "blaze-runner-sneaker"))
    assert len(messages) == 1
    text = messages[0]["text"]
    assert text.startswith("Looking at the Blaze Runner Sneaker?")
    # Size 43 in red is sold out, so it is not offered.
    assert "In stock: red (42); white (42)." in text
    standard, express = delivery_estimate("standard"), delivery_estimate("express")
    assert (f"Order today and it arrives {delivery_text(standard)} with standard shipping, "
            f"or {delivery_text(express)} with express.") in text
    assert "Any questions about it?" in text
    assert [b["title"] for b in messages[0]["buttons"]] == ["Add to cart", "Read the reviews", "Delivery options"]
    assert messages[0]["buttons"][0]["payload"] == '/add_to_cart{"product_handle": "blaze-runner-sneaker"}'
    assert events == [SlotSet("current_product", "blaze-runner-sneaker")]


def test_a_follow_up_question_means_the_product_of_the_page(shop_engine):
    _, events = open_chat(entity("page_type", "product"), entity("product_handle", "harbor-denim-jacket"))
    slots = {e["name"]: e["value"] for e in events}
    # "does it come in blue?" right after: no product shown in the chat, the page's product is meant.
    tracker = tracker_for("does it come in blue?", "check_availability", [entity("color", "blue")], slots=slots)
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionCheckAvailability().run(dispatcher, tracker, {}))
    assert dispatcher.messages[0]["text"].startswith("Yes! The Harbor Denim Jacket in blue is in stock")


def test_a_sold_out_product_says_so_without_a_delivery_estimate_or_cart_button(shop_engine):
    with session_scope(shop_engine) as session:
        for variant in session.execute(
            select(Variant).join(Product).where(Product.handle == "summit-pro-sneaker")
        ).scalars():
            variant.stock = 0
    messages, events = open_chat(entity("page_type", "product"), entity("product_handle", "summit-pro-sneaker"))
    text = messages[0]["text"]
    assert "It's sold out in every size and colour right now." in text
    assert "Order today" not in text
    assert [b["title"] for b in messages[0]["buttons"]] == ["Delivery options"]
    assert events == [SlotSet("current_product", "summit-pro-sneaker")]


def test_an_unknown_or_unpublished_product_gets_the_normal_greeting(shop_engine):
    with session_scope(shop_engine) as session:
        session.execute(select(Product).where(Product.handle == "court-classic-sneaker")).scalar_one().published = False
    for handle in ("no-such-thing", "court-classic-sneaker", "x" * 500):
        messages, events = open_chat(entity("page_type", "product"), entity("product_handle", handle))
        assert [m["text"][:len(GREETING_START)] for m in messages] == [GREETING_START], handle
        assert events == []


def test_the_cart_page_offers_to_finish_the_order_with_the_carts_count_and_total(shop_engine):
    with session_scope(shop_engine) as session:
        variant = session.execute(
            select(Variant).join(Product).where(Product.handle == "harbor-denim-jacket")
        ).scalar_one()
        add_item(session, "shopper-7", variant.id, 2)
    messages, events = open_chat(entity("page_type", "cart"), sender="shopper-7")
    text = messages[0]["text"]
    assert text.startswith("You have 2 items in your cart, $")
    assert "in total. Shall I help you check out?" in text
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/checkout", "/view_cart", "/talk_to_human"]
    assert events == []


def test_the_checkout_page_with_an_empty_chat_cart_still_offers_help(shop_engine):
    messages, _ = open_chat(entity("page_type", "checkout"), sender="nobody-yet")
    assert messages[0]["text"].startswith("Need a hand finishing your order?")
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/shipping_options", "/payment_methods",
                                                             "/talk_to_human"]


def test_other_pages_and_a_missing_page_type_get_the_greeting(shop_engine, monkeypatch):
    monkeypatch.setenv("SHOP_NAME", "Trail Supply")
    for entities in ([entity("page_type", "home")], [entity("page_type", "search")], [],
                     [entity("page_type", "product")]):
        messages, events = open_chat(*entities)
        assert [m["text"] for m in messages] == [
            "Hi, welcome to Trail Supply! I'm the shop assistant. I can find products for you by type, "
            "colour and budget. What are you looking for today?"
        ]
        assert events == []


def test_a_shop_database_that_is_down_still_greets(tmp_path, monkeypatch):
    # A directory where the SQLite file should be: every query fails.
    (tmp_path / "shop.db").mkdir()
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    messages, events = open_chat(entity("page_type", "product"), entity("product_handle", "blaze-runner-sneaker"))
    assert messages[0]["text"].startswith("Hi, welcome to")
    assert events == []
