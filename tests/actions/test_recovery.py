"""Cart reminders and stock alerts in the chat, against a real SQLite shop and real rasa_sdk trackers: what the
shopper reads and what lands in the database."""
import json
from datetime import datetime, timedelta

from sqlalchemy import select

from actions.recovery import (
    ActionCartReminder,
    ActionStockAlert,
    ActionStopReminders,
    ActionSubscribeAlert,
    alert_kind_from_text,
)
from shop.alerts import StockAlert, run_due_alerts, subscribe
from shop.carts import add_item
from shop.db import session_scope
from shop.models import Variant
from shop.reminders import CartReminder, ReminderOptOut, run_due_reminders
from tests.actions.trackers import entity, run, tracker_for

SHOWN = ["court-classic-sneaker", "blaze-runner-sneaker", "summit-pro-sneaker"]


def variant_id(engine, title, color, size):
    with session_scope(engine) as session:
        return next(v.id for v in session.execute(select(Variant)).scalars() if
                    (v.product.title, v.color, v.size) == (title, color, size))


def reminder_code(engine, conversation_id="shopper-1"):
    """Send the conversation's due reminder the way the worker does (an hour from now) and return its code."""
    calls = []
    with session_scope(engine) as session:
        run_due_reminders(session, datetime.utcnow() + timedelta(hours=1),
                          lambda conversation, intent, entities: calls.append(entities) or True)
    return calls[0]["discount_code"]


def alerts(engine):
    with session_scope(engine) as session:
        rows = session.execute(select(StockAlert, Variant).join(Variant, Variant.id == StockAlert.variant_id)
                               .order_by(StockAlert.id)).all()
        return [(v.product.title, v.color, v.size, a.kind, a.email) for a, v in rows]


def test_the_reminder_lists_the_cart_the_code_and_offers_checkout_or_no_thanks(shop_engine):
    with session_scope(shop_engine) as session:
        add_item(session, "shopper-1", variant_id(shop_engine, "Blaze Runner Sneaker", "red", "42"), 2)
    code = reminder_code(shop_engine)

    messages, events = run(ActionCartReminder(), tracker_for("EXTERNAL: cart reminder", "EXTERNAL_cart_reminder",
                                                             [entity("discount_code", code)]))
    [message] = messages
    lines = message["text"].splitlines()
    assert lines[0] == "You left these in your cart:"
    assert lines[1] == "- 2 x Blaze Runner Sneaker (red / 42) at $74.99 = $149.98"
    assert lines[2].startswith("Total: $")
    assert lines[3].startswith(f'Here\'s 10% off if you order now: say "apply {code}" (one use, valid until ')
    assert lines[4] == "Shall we check out?"
    assert message["buttons"] == [{"title": "Check out", "payload": "/checkout"},
                                  {"title": "No thanks", "payload": "/stop_reminders"}]
    assert events == []


def test_a_cart_emptied_meanwhile_gets_no_reminder_text(shop_engine):
    messages, _ = run(ActionCartReminder(), tracker_for("EXTERNAL: cart reminder", "EXTERNAL_cart_reminder"))
    assert messages == []


def test_no_thanks_stops_the_reminders_of_this_chat(shop_engine):
    with session_scope(shop_engine) as session:
        add_item(session, "shopper-1", variant_id(shop_engine, "Harbor Denim Jacket", "blue", "M"), 1)

    messages, _ = run(ActionStopReminders(), tracker_for("no thanks", "stop_reminders"))
    assert messages[0]["text"].startswith("No problem: I won't remind you about your cart again.")
    with session_scope(shop_engine) as session:
        assert session.get(ReminderOptOut, "shopper-1") is not None
        assert session.execute(select(CartReminder.status, CartReminder.stop_reason)).all() == [("stopped", "declined")]


def test_tell_me_when_the_second_one_in_size_43_is_back(shop_engine):
    tracker = tracker_for("tell me when the second one in size 43 is back", "notify_me",
                          [entity("position", "2"), entity("size", "43")], slots={"shown_products": SHOWN})
    messages, events = run(ActionSubscribeAlert(), tracker)
    assert messages[0]["text"] == ("Done: I'll tell you here as soon as Blaze Runner Sneaker (red / 43) is back in "
                                   "stock.")
    assert {"event": "slot", "timestamp": None, "name": "current_product", "value": "blaze-runner-sneaker"} in events
    assert alerts(shop_engine) == [("Blaze Runner Sneaker", "red", "43", "back_in_stock", "")]

    again, _ = run(ActionSubscribeAlert(), tracker)
    assert again[0]["text"].startswith("I'm already watching it: ")
    assert len(alerts(shop_engine)) == 1


def test_let_me_know_if_it_gets_cheaper_watches_the_price_of_the_current_product(shop_engine):
    messages, _ = run(ActionSubscribeAlert(), tracker_for(
        "let me know if it gets cheaper, email me at Sam@Example.com", "notify_me",
        [entity("email", "Sam@Example.com")], slots={"current_product": "harbor-denim-jacket"}))
    assert messages[0]["text"] == ("Done: I'll tell you here when Harbor Denim Jacket (blue / M) costs less than "
                                   "$89.00, or by email at sam@example.com if you're not around.")
    assert alerts(shop_engine) == [("Harbor Denim Jacket", "blue", "M", "price_drop", "sam@example.com")]


def test_nothing_to_wait_for_ambiguous_or_unknown(shop_engine):
    in_stock, _ = run(ActionSubscribeAlert(), tracker_for("tell me when it's back", "notify_me",
                                                         slots={"current_product": "harbor-denim-jacket"}))
    assert in_stock[0]["text"] == ('Good news: Harbor Denim Jacket is in stock right now (blue / M). Say "add it" '
                                   "to put it in your cart.")
    nothing, _ = run(ActionSubscribeAlert(), tracker_for("tell me when it's back in stock", "notify_me"))
    assert nothing[0]["text"].startswith("Which product should I keep an eye on?")
    wrong, _ = run(ActionSubscribeAlert(), tracker_for("tell me when the green one is back", "notify_me",
                                                      [entity("color", "green")],
                                                      slots={"current_product": "blaze-runner-sneaker"}))
    assert wrong[0]["text"] == "Blaze Runner Sneaker doesn't come in green."
    assert alerts(shop_engine) == []


def test_the_kind_of_alert_comes_from_the_words_used():
    assert alert_kind_from_text("let me know when the price drops") == "price_drop"
    assert alert_kind_from_text("tell me if it goes on sale") == "price_drop"
    assert alert_kind_from_text("notify me when it's back in stock") == "back_in_stock"
    assert alert_kind_from_text("ping me when size M is available again") == "back_in_stock"


def test_the_alert_says_what_changed_with_the_link_and_an_add_to_cart_button(shop_engine):
    sold_out = variant_id(shop_engine, "Blaze Runner Sneaker", "red", "43")
    with session_scope(shop_engine) as session:
        alert_id = subscribe(session, variant_id=sold_out, kind="back_in_stock", now=datetime.utcnow(),
                             conversation_id="shopper-1").alert.id
        session.get(Variant, sold_out).stock = 2
    with session_scope(shop_engine) as session:
        assert run_due_alerts(session, datetime.utcnow(), lambda *call: True, lambda *mail: None) == 1

    messages, events = run(ActionStockAlert(), tracker_for("EXTERNAL: stock alert", "EXTERNAL_stock_alert",
                                                           [entity("stock_alert_id", str(alert_id))]))
    [message] = messages
    assert message["text"] == ("Good news: Blaze Runner Sneaker (red / 43) is back in stock, at $74.99.\n"
                               "http://shop.test/products/blaze-runner-sneaker")
    [button] = message["buttons"]
    assert button["title"] == "Add to cart"
    assert button["payload"].startswith("/add_to_cart")
    assert json.loads(button["payload"][len("/add_to_cart"):]) == {
        "product_handle": "blaze-runner-sneaker", "size": "43", "color": "red"}
    assert events[0]["name"] == "current_product"
    unknown, _ = run(ActionStockAlert(), tracker_for("EXTERNAL: stock alert", "EXTERNAL_stock_alert",
                                                     [entity("stock_alert_id", "99999")]))
    assert unknown == []
