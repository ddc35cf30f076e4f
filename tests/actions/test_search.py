import asyncio

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import func, select

from actions.search import ActionSearchProducts, price_to_cents
from shop.db import session_scope
from shop.models import Product, Variant
from tests.actions.trackers import entity, tracker_for


def run_search(tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionSearchProducts().run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def test_red_sneakers_under_80_lists_only_matching_products_as_text(shop_engine):
    tracker = tracker_for(
        "show me red sneakers under 80 dollars",
        "search_product",
        [entity("color", "red"), entity("category", "sneakers"), entity("price_max", "80")],
    )
    messages, events = run_search(tracker)

    assert len(messages) == 1
    text = messages[0]["text"]
    assert text.startswith("I found 2 red sneakers under $80:")
    # Cheapest first; the $129 sneaker and the jacket are filtered out.
    assert "1. Court Classic Sneaker by Kicks & Co: $59.00" in text
    assert "2. Blaze Runner Sneaker by Stride: $74.99, 4.5/5 from 2 reviews" in text
    assert "http://shop.test/products/blaze-runner-sneaker" in text
    assert "Summit" not in text and "Jacket" not in text
    assert events == [
        {"event": "slot", "timestamp": None, "name": "shown_products",
         "value": ["court-classic-sneaker", "blaze-runner-sneaker"]}
    ]


def test_web_chat_gets_a_carousel_of_product_cards(shop_engine):
    tracker = tracker_for(
        "red sneakers", "search_product", [entity("color", "red"), entity("category", "sneakers")],
        channel="socketio",
    )
    messages, _ = run_search(tracker)

    assert messages[0]["text"] == "I found 3 red sneakers:"
    cards = messages[1]["attachment"]["payload"]["elements"]
    assert [card["title"] for card in cards] == [
        "Court Classic Sneaker", "Blaze Runner Sneaker", "Summit Pro Sneaker"]
    assert cards[1]["buttons"][0]["url"] == "http://shop.test/products/blaze-runner-sneaker"
    assert cards[1]["image_url"] == "http://shop.test/images/products/blaze-runner-sneaker.svg"
    assert "$74.99" in cards[1]["subtitle"]


def test_no_match_says_so_and_clears_shown_products(shop_engine):
    tracker = tracker_for(
        "purple jackets under 10", "search_product",
        [entity("color", "purple"), entity("category", "jackets"), entity("price_max", "10")],
    )
    messages, events = run_search(tracker)
    assert messages[0]["text"].startswith("I couldn't find any purple jackets under $10.")
    assert events[0]["value"] == []


def test_search_without_any_filter_asks_what_to_look_for(shop_engine):
    messages, events = run_search(tracker_for("find something", "search_product"))
    assert "What are you looking for?" in messages[0]["text"]
    assert events == []


def test_sql_in_the_search_is_treated_as_text_and_changes_nothing(shop_engine):
    tracker = tracker_for(
        "x", "search_product", [entity("category", "'; DROP TABLE products; --" * 300)],
    )
    messages, _ = run_search(tracker)
    assert messages[0]["text"].startswith("I couldn't find any")
    with session_scope(shop_engine) as session:
        assert session.execute(select(func.count(Product.id))).scalar_one() == 4
        assert session.execute(select(func.count(Variant.id))).scalar_one() == 6


def test_catalog_outage_gets_an_honest_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'no-tables.db'}")
    messages, events = run_search(
        tracker_for("jeans", "search_product", [entity("category", "jeans")]))
    assert "can't reach our product catalogue" in messages[0]["text"]
    assert events == []


@pytest.mark.parametrize(
    "value, cents",
    [("80", 8000), ("$80", 8000), ("79.99", 7999), ("80 dollars", 8000), ("lots", None), ("", None)],
)
def test_price_entities_become_cents(value, cents):
    assert price_to_cents(value) == cents
