"""The cart conversations against a real SQLite shop: what the shopper reads and what lands in the carts table."""
import asyncio

from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.cart import (
    ActionAddToCart,
    ActionAskCartVariantChoice,
    ActionRemoveFromCart,
    ActionUpdateQuantity,
    ActionViewCart,
    ValidateCartVariantForm,
)
from actions.presentation import product_card
from shop.catalog import summaries_for_handles
from shop.db import session_scope
from shop.models import Cart, CartItem, Variant
from tests.actions.trackers import entity, run, tracker_for

SHOWN = ["court-classic-sneaker", "blaze-runner-sneaker", "summit-pro-sneaker"]


def slots(events):
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def cart_lines(engine, session_id="shopper-1"):
    """(product title, colour, size, quantity) of the session's open cart, from the database."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(CartItem, Variant).join(Cart, Cart.id == CartItem.cart_id).join(Variant, Variant.id == CartItem.variant_id)
            .where(Cart.session_id == session_id, Cart.status == "open").order_by(CartItem.id)
        ).all()
        return [(v.product.title, v.color, v.size, item.quantity) for item, v in rows]


def add(text, *entities, slots_=None, channel="rest"):
    return tracker_for(text, "add_to_cart", list(entities), channel=channel,
                       slots={"shown_products": SHOWN, **(slots_ or {})})


def test_add_the_second_one_in_size_42_puts_that_variant_in_the_cart(shop_engine):
    messages, events = run(ActionAddToCart(), add("add the second one in size 42", entity("position", "2"),
                                                  entity("size", "42"), entity("color", "red")))

    text = messages[0]["text"]
    assert text.startswith("Added 1 x Blaze Runner Sneaker (red / 42) to your cart.")
    assert "1 x Blaze Runner Sneaker (red / 42) at $74.99 = $74.99" in text
    assert "Total:" in text
    assert slots(events)["cart_add_status"] == "added"
    assert cart_lines(shop_engine) == [("Blaze Runner Sneaker", "red", "42", 1)]


def test_a_missing_size_is_asked_offering_only_variants_in_stock(shop_engine):
    _, events = run(ActionAddToCart(), add("add the second one", entity("position", "2")))
    assert slots(events)["cart_add_status"] == "needs_variant"
    pending = slots(events)["cart_pending"]
    assert pending["handle"] == "blaze-runner-sneaker"
    assert cart_lines(shop_engine) == []

    messages, _ = run(ActionAskCartVariantChoice(), tracker_for("", "add_to_cart", slots={"cart_pending": pending}))
    # Size 43 exists but is sold out, so it is not offered.
    assert messages[0]["text"] == "Which colour would you like for Blaze Runner Sneaker? In stock: red, white."
    assert [b["title"] for b in messages[0]["buttons"]] == ["red", "white"]


def test_the_answer_to_the_variant_question_adds_that_variant(shop_engine):
    pending = {"handle": "blaze-runner-sneaker", "quantity": "2", "size": None, "color": None}
    form_slots = {"cart_pending": pending, "requested_slot": "cart_variant_choice"}
    dispatcher = CollectingDispatcher()
    validated = asyncio.run(ValidateCartVariantForm().validate_cart_variant_choice(
        "white please", dispatcher, tracker_for("white please", "inform", slots=form_slots), {}))
    assert validated["cart_variant_choice"] == "white 42"

    after_form = tracker_for("white please", "inform", slots={**form_slots, **validated})
    messages, events = run(ActionAddToCart(), after_form)
    assert messages[0]["text"].startswith("Added 2 x Blaze Runner Sneaker (white / 42) to your cart.")
    assert cart_lines(shop_engine) == [("Blaze Runner Sneaker", "white", "42", 2)]
    assert slots(events)["cart_pending"] is None


def test_the_form_starting_with_the_slot_just_reset_asks_once_without_complaining(shop_engine):
    """Rasa hands action_add_to_cart's SlotSet(cart_variant_choice, None) to the form as it starts."""
    pending = {"handle": "blaze-runner-sneaker", "quantity": "1", "size": None, "color": None}
    dispatcher = CollectingDispatcher()
    validated = asyncio.run(ValidateCartVariantForm().validate_cart_variant_choice(
        None, dispatcher, tracker_for("/add_to_cart", "add_to_cart", slots={"cart_pending": pending}), {}))
    assert validated == {"cart_variant_choice": None}
    assert dispatcher.messages == []


def test_a_sold_out_variant_is_refused_and_the_question_offers_what_is_left(shop_engine):
    dispatcher = CollectingDispatcher()
    pending = {"handle": "blaze-runner-sneaker", "quantity": "1", "size": None, "color": "red"}
    validated = asyncio.run(ValidateCartVariantForm().validate_cart_variant_choice(
        "43", dispatcher, tracker_for("43", "inform", slots={"cart_pending": pending}), {}))
    assert validated == {"cart_variant_choice": None}
    assert dispatcher.messages[0]["text"].startswith("Sorry, 43 is sold out.")
    assert cart_lines(shop_engine) == []


def test_the_colour_searched_for_is_used_when_the_product_has_it(shop_engine):
    messages, _ = run(ActionAddToCart(), add("add the second one", entity("position", "2"),
                                             slots_={"color": "white", "category": "sneakers"}))
    assert messages[0]["text"].startswith("Added 1 x Blaze Runner Sneaker (white / 42) to your cart.")
    assert cart_lines(shop_engine) == [("Blaze Runner Sneaker", "white", "42", 1)]


def test_asking_for_a_sold_out_size_says_so_and_asks_again(shop_engine):
    messages, events = run(ActionAddToCart(), add("add the second one in size 43", entity("position", "2"),
                                                  entity("size", "43")))
    assert messages[0]["text"] == "Sorry, Blaze Runner Sneaker in size 43 is sold out."
    assert slots(events)["cart_add_status"] == "needs_variant"
    assert cart_lines(shop_engine) == []


def test_it_means_the_product_talked_about_last_and_a_single_variant_needs_no_question(shop_engine):
    messages, _ = run(ActionAddToCart(), add("add it", slots_={"current_product": "harbor-denim-jacket"}))
    assert messages[0]["text"].startswith("Added 1 x Harbor Denim Jacket (blue / M) to your cart.")
    assert cart_lines(shop_engine) == [("Harbor Denim Jacket", "blue", "M", 1)]


def test_the_card_button_names_the_product_by_handle(shop_engine):
    messages, _ = run(ActionAddToCart(), add('/add_to_cart{"product_handle": "summit-pro-sneaker"}',
                                             entity("product_handle", "summit-pro-sneaker")))
    assert messages[0]["text"].startswith("Added 1 x Summit Pro Sneaker (red / 42)")
    assert cart_lines(shop_engine) == [("Summit Pro Sneaker", "red", "42", 1)]


def test_product_cards_carry_an_add_to_cart_button(shop_engine):
    with session_scope(shop_engine) as session:
        card = product_card(summaries_for_handles(session, ["summit-pro-sneaker"])[0])
    assert {"title": "Add to cart", "type": "postback",
            "payload": '/add_to_cart{"product_handle": "summit-pro-sneaker"}'} in card["buttons"]


def test_more_than_in_stock_is_refused_and_nothing_is_added(shop_engine):
    messages, events = run(ActionAddToCart(), add("add 4 of the second one", entity("position", "2"),
                                                  entity("quantity", "4"), entity("color", "red"),
                                                  entity("size", "42")))
    assert messages[0]["text"] == "Only 3 of Blaze Runner Sneaker (red / 42) are in stock."
    assert slots(events)["cart_add_status"] == "refused"
    assert cart_lines(shop_engine) == []


def test_negative_and_huge_quantities_are_refused(shop_engine):
    negative, _ = run(ActionAddToCart(), add("add -2 of it", entity("quantity", "-2"),
                                             slots_={"current_product": "harbor-denim-jacket"}))
    huge, _ = run(ActionAddToCart(), add("add 500 of it", entity("quantity", "500"),
                                         slots_={"current_product": "harbor-denim-jacket"}))
    assert negative[0]["text"] == "The quantity must be at least 1."
    assert huge[0]["text"] == "You can have at most 20 of one item in your cart."
    assert cart_lines(shop_engine) == []


def test_nothing_shown_asks_which_product(shop_engine):
    messages, events = run(ActionAddToCart(), tracker_for("add it", "add_to_cart"))
    assert messages[0]["text"].startswith("Which product would you like to add?")
    assert slots(events)["cart_add_status"] == "refused"


def _fill_cart():
    run(ActionAddToCart(), add("add", entity("product_handle", "harbor-denim-jacket")))
    run(ActionAddToCart(), add("add", entity("product_handle", "summit-pro-sneaker")))


def test_view_cart_shows_line_totals_and_total(shop_engine):
    _fill_cart()
    messages, _ = run(ActionViewCart(), tracker_for("show my cart", "view_cart"))
    text = messages[0]["text"]
    assert "- 1 x Harbor Denim Jacket (blue / M) at $89.00 = $89.00" in text
    assert "- 1 x Summit Pro Sneaker (red / 42) at $129.00 = $129.00" in text
    assert "Subtotal: $218.00" in text
    assert "Shipping (Standard): free" in text


def test_an_empty_cart_says_so(shop_engine):
    messages, _ = run(ActionViewCart(), tracker_for("show my cart", "view_cart"))
    assert messages[0]["text"].startswith("Your cart is empty.")


def test_update_the_quantity_of_a_named_line(shop_engine):
    _fill_cart()
    messages, _ = run(ActionUpdateQuantity(), tracker_for("make the jacket 3", "update_quantity",
                                                          [entity("quantity", "3")]))
    assert messages[0]["text"].startswith("Updated Harbor Denim Jacket (blue / M) to 3.")
    assert cart_lines(shop_engine) == [("Harbor Denim Jacket", "blue", "M", 3), ("Summit Pro Sneaker", "red", "42", 1)]


def test_update_beyond_stock_or_below_zero_changes_nothing(shop_engine):
    _fill_cart()
    too_many, _ = run(ActionUpdateQuantity(), tracker_for("make the jacket 6", "update_quantity",
                                                          [entity("quantity", "6")]))
    negative, _ = run(ActionUpdateQuantity(), tracker_for("make the jacket -1", "update_quantity",
                                                          [entity("quantity", "-1")]))
    assert too_many[0]["text"] == "Only 5 of Harbor Denim Jacket (blue / M) are in stock."
    assert negative[0]["text"] == "The quantity can't be negative."
    assert cart_lines(shop_engine) == [("Harbor Denim Jacket", "blue", "M", 1), ("Summit Pro Sneaker", "red", "42", 1)]


def test_remove_by_position_and_ask_when_unclear(shop_engine):
    _fill_cart()
    unclear, _ = run(ActionRemoveFromCart(), tracker_for("remove that", "remove_from_cart"))
    assert unclear[0]["text"].startswith("Which item would you like to remove? Your cart has:\n1. Harbor Denim Jacket")
    assert len(cart_lines(shop_engine)) == 2

    messages, _ = run(ActionRemoveFromCart(), tracker_for("remove the second item", "remove_from_cart",
                                                          [entity("position", "2")]))
    assert messages[0]["text"].startswith("Removed Summit Pro Sneaker (red / 42) from your cart.")
    assert cart_lines(shop_engine) == [("Harbor Denim Jacket", "blue", "M", 1)]


def test_the_cart_belongs_to_the_conversation(shop_engine):
    _fill_cart()
    other = tracker_for("show my cart", "view_cart")
    other.sender_id = "someone-else"
    messages, _ = run(ActionViewCart(), other)
    assert messages[0]["text"].startswith("Your cart is empty.")
