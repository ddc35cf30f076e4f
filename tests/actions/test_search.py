import asyncio

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import func, select

from actions.search import ActionAskSize, ActionSearchProducts, ValidateNarrowSearchForm, price_to_cents
from shop.db import session_scope
from shop.models import Product, Variant
from ops.action_fallback import TALK_TO_A_PERSON
from tests.actions.trackers import entity, run, slot_events, tracker_for
from tests.factories import add_product


def new_search(text, channel="rest", **mentioned):
    entities = [entity(name, value) for name, value in mentioned.items()]
    return tracker_for(text, "search_product", entities, channel=channel, slots=dict(mentioned))


def test_red_sneakers_under_80_lists_only_matching_products_as_text(shop_engine):
    messages, events = run(
        ActionSearchProducts(),
        new_search("show me red sneakers under 80 dollars", color="red", category="sneakers", price_max="80"),
    )

    text = messages[0]["text"]
    assert text.startswith("I found 2 red sneakers under $80:")
    # Cheapest first; the $129 sneaker and the jacket are filtered out.
    assert "1. Court Classic Sneaker by Kicks & Co: $59.00" in text
    assert "2. Blaze Runner Sneaker by Stride: $74.99, 4.5/5 from 2 reviews" in text
    assert "http://shop.test/products/blaze-runner-sneaker" in text
    assert "Summit" not in text and "Jacket" not in text
    slots = slot_events(events)
    assert slots["shown_products"] == ["court-classic-sneaker", "blaze-runner-sneaker"]
    assert slots["search_outcome"] == "shown"


def test_web_chat_gets_a_carousel_of_product_cards(shop_engine):
    messages, _ = run(
        ActionSearchProducts(), new_search("red sneakers", channel="socketio", color="red", category="sneakers")
    )

    assert messages[0]["text"] == "I found 3 red sneakers:"
    cards = messages[1]["attachment"]["payload"]["elements"]
    assert [card["title"] for card in cards] == [
        "Court Classic Sneaker", "Blaze Runner Sneaker", "Summit Pro Sneaker"]
    assert cards[1]["buttons"][0]["url"] == "http://shop.test/products/blaze-runner-sneaker"
    assert cards[1]["image_url"] == "http://shop.test/images/products/blaze-runner-sneaker.svg"
    assert "$74.99" in cards[1]["subtitle"]


def test_a_new_search_forgets_the_filters_of_the_last_one(shop_engine):
    tracker = tracker_for(
        "show me jackets", "search_product", [entity("category", "jackets")],
        slots={"category": "jackets", "color": "red", "price_max": "80"},
    )
    messages, events = run(ActionSearchProducts(), tracker)
    assert slot_events(events)["color"] is None and slot_events(events)["price_max"] is None
    assert "Harbor Denim Jacket" in messages[0]["text"]


def test_refining_keeps_the_other_filters(shop_engine):
    tracker = tracker_for(
        "in white instead", "refine_search", [entity("color", "white")],
        slots={"category": "sneakers", "color": "white", "price_max": "80"},
    )
    messages, _ = run(ActionSearchProducts(), tracker)
    assert messages[0]["text"].startswith("I found 1 white sneakers under $80:")
    assert "Blaze Runner Sneaker" in messages[0]["text"]


def test_cheaper_looks_below_the_cheapest_product_shown(shop_engine):
    tracker = tracker_for(
        "something cheaper", "refine_search",
        slots={"category": "sneakers", "shown_products": ["blaze-runner-sneaker", "summit-pro-sneaker"]},
    )
    messages, events = run(ActionSearchProducts(), tracker)
    assert slot_events(events)["price_max"] == "74.98"
    assert "Court Classic Sneaker" in messages[0]["text"]
    assert "Blaze Runner" not in messages[0]["text"]


def test_nothing_found_relaxes_a_filter_and_says_which(shop_engine):
    messages, events = run(
        ActionSearchProducts(), new_search("purple sneakers", color="purple", category="sneakers")
    )
    text = messages[0]["text"]
    assert text.startswith("I couldn't find any purple sneakers, so I relaxed the exact colour")
    assert "Court Classic Sneaker" in text
    assert slot_events(events)["shown_products"]


def test_search_without_any_filter_asks_what_to_look_for(shop_engine):
    messages, events = run(ActionSearchProducts(), tracker_for("find something", "search_product"))
    assert "What are you looking for?" in messages[0]["text"]
    assert slot_events(events) == {"search_outcome": "shown"}


def test_sql_in_the_search_is_treated_as_text_and_changes_nothing(shop_engine):
    injection = "'; DROP TABLE products; --" * 300
    messages, _ = run(ActionSearchProducts(), new_search("x", category=injection))
    assert messages[0]["text"]
    with session_scope(shop_engine) as session:
        assert session.execute(select(func.count(Product.id))).scalar_one() == 4
        assert session.execute(select(func.count(Variant.id))).scalar_one() == 6


def test_catalog_outage_gets_an_honest_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'no-tables.db'}")
    messages, events = run(ActionSearchProducts(), new_search("jeans", category="jeans"))
    assert "can't reach our shop system" in messages[0]["text"]
    assert messages[0]["buttons"] == [TALK_TO_A_PERSON]


@pytest.fixture
def many_sneakers(shop_engine):
    sizes = ["40", "41", "42", "43"]
    with session_scope(shop_engine) as session:
        for number in range(48):
            add_product(
                session, f"Street Sneaker {number}", "Shoes", "Sneakers", "Stride",
                [("black" if number % 2 else "white", sizes[number % 4], 5000 + number * 100, 2)],
            )
    return shop_engine


def test_too_many_matches_asks_one_narrowing_question_with_sizes_in_stock(many_sneakers):
    messages, events = run(ActionSearchProducts(), new_search("sneakers", category="sneakers"))
    assert messages[0]["text"] == "I have 51 sneakers in stock."
    slots = slot_events(events)
    assert slots["search_outcome"] == "too_many"
    # Four sizes split the sneakers most evenly, so size is the most useful question.
    assert slots["narrowing_filter"] == "size"

    form = ValidateNarrowSearchForm()
    narrowing = tracker_for("sneakers", "search_product", slots={"category": "sneakers", "narrowing_filter": "size"})
    wanted = asyncio.run(form.required_slots(["size", "color", "price_max"], CollectingDispatcher(), narrowing, {}))
    assert wanted == ["size"]

    question, _ = run(ActionAskSize(), narrowing)
    titles = [b["title"] for b in question[0]["buttons"]]
    assert "42 (14)" in titles and titles[-1] == "Doesn't matter"


def test_an_answer_the_catalog_cannot_meet_is_refused_with_what_is_in_stock(many_sneakers):
    form = ValidateNarrowSearchForm()
    tracker = tracker_for("size 50", "inform", [entity("size", "50")],
                          slots={"category": "sneakers", "size": "50", "requested_slot": "size"})
    dispatcher = CollectingDispatcher()
    result = asyncio.run(form.validate_size("50", dispatcher, tracker, {}))
    assert result == {"size": None}
    assert "In stock:" in dispatcher.messages[0]["text"] and "42" in dispatcher.messages[0]["text"]


def test_show_more_pages_through_the_results(many_sneakers):
    tracker = tracker_for("show more", "show_more", slots={"category": "sneakers", "search_page": 0})
    messages, events = run(ActionSearchProducts(), tracker)
    assert messages[0]["text"].startswith("Here are sneakers 6-10 of 51:")
    assert slot_events(events)["search_page"] == 1


@pytest.mark.parametrize(
    "value, cents",
    [("80", 8000), ("$80", 8000), ("79.99", 7999), ("80 dollars", 8000), ("lots", None), ("", None)],
)
def test_price_entities_become_cents(value, cents):
    assert price_to_cents(value) == cents


def test_a_size_the_shopper_gave_earlier_is_used_instead_of_asking(many_sneakers):
    tracker = tracker_for("sneakers", "search_product", [entity("category", "sneakers")],
                          slots={"category": "sneakers", "preferences": {"shoe_size": "42"}})
    messages, events = run(ActionSearchProducts(), tracker)
    slots = slot_events(events)
    assert slots["size"] == "42" and slots["search_outcome"] == "shown"
    assert messages[0]["text"].startswith("I found 14 sneakers in size 42.")
