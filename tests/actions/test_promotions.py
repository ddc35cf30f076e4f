"""Promotions and discount codes in the chat, checked against the carts and codes in a real SQLite shop."""
import asyncio
from datetime import datetime, timedelta

from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.cart import ActionAddToCart
from actions.promotions import ActionApplyDiscount, ActionListPromotions
from shop.carts import CartDiscount
from shop.db import session_scope
from shop.models import DiscountCode
from tests.actions.trackers import entity, tracker_for


def run(action, tracker):
    dispatcher = CollectingDispatcher()
    asyncio.run(action.run(dispatcher, tracker, {}))
    return [m["text"] for m in dispatcher.messages]


def add_codes(engine):
    now = datetime.utcnow()
    with session_scope(engine) as session:
        session.add_all([
            DiscountCode(code="SAVE20", description="20% off", kind="percent", value=20, public=True,
                         starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=10)),
            DiscountCode(code="FREESHIP", description="Free shipping", kind="free_shipping", value=0, public=True,
                         min_spend_cents=5000),
            DiscountCode(code="TAKE25", description="$25 off $150", kind="fixed", value=2500, public=True,
                         min_spend_cents=15000),
            DiscountCode(code="SPRING25", description="ended", kind="percent", value=25, public=True,
                         starts_at=now - timedelta(days=100), ends_at=now - timedelta(days=50)),
        ])


def applied_code(engine):
    with session_scope(engine) as session:
        row = session.execute(select(DiscountCode.code).join(CartDiscount,
                                                             CartDiscount.discount_code_id == DiscountCode.id)).first()
        return row[0] if row else None


def fill_cart():
    run(ActionAddToCart(), tracker_for("add", "add_to_cart", [entity("product_handle", "harbor-denim-jacket")]))


def apply(text, *codes):
    return run(ActionApplyDiscount(), tracker_for(text, "apply_discount",
                                                  [entity("discount_code", code) for code in codes]))


def test_the_public_promotions_running_now_are_listed(shop_engine):
    add_codes(shop_engine)
    text = run(ActionListPromotions(), tracker_for("any promotions?", "ask_promotions"))[0]
    assert "FREESHIP: free standard shipping on orders of $50.00 or more" in text
    assert "SAVE20: 20% off" in text
    assert "TAKE25: $25.00 off on orders of $150.00 or more" in text
    assert "SPRING25" not in text


def test_a_valid_code_is_applied_with_the_saving_and_the_new_total(shop_engine):
    add_codes(shop_engine)
    fill_cart()
    text = apply("apply SAVE20", "SAVE20")[0]
    assert text.startswith("SAVE20 applied: 20% off, you save $17.80.")
    assert "Discount (SAVE20): -$17.80" in text
    assert applied_code(shop_engine) == "SAVE20"


def test_a_code_typed_without_an_entity_is_still_found(shop_engine):
    add_codes(shop_engine)
    fill_cart()
    assert apply("use code save20 please")[0].startswith("SAVE20 applied")


def test_unknown_expired_and_too_small_carts_say_exactly_why_and_apply_nothing(shop_engine):
    add_codes(shop_engine)
    fill_cart()
    assert apply("apply NOPE99", "NOPE99") == ["I don't recognise the code NOPE99. Please check the spelling."]
    assert apply("apply SPRING25", "SPRING25")[0].startswith("SPRING25 expired on")
    assert apply("apply TAKE25", "TAKE25") == ["TAKE25 needs $150.00 in the cart; you have $89.00."]
    assert applied_code(shop_engine) is None


def test_two_codes_at_once_are_not_stacked(shop_engine):
    add_codes(shop_engine)
    fill_cart()
    text = apply("apply SAVE20 and FREESHIP", "SAVE20", "FREESHIP")[0]
    assert text == "Only one code can be used per order, so I can't combine SAVE20 and FREESHIP. Which one would you like?"
    assert applied_code(shop_engine) is None


def test_a_second_code_replaces_the_first(shop_engine):
    add_codes(shop_engine)
    fill_cart()
    apply("apply SAVE20", "SAVE20")
    text = apply("apply FREESHIP", "FREESHIP")[0]
    assert "It replaces SAVE20: one code per order." in text
    assert applied_code(shop_engine) == "FREESHIP"


def test_a_code_on_an_empty_cart_is_refused(shop_engine):
    add_codes(shop_engine)
    assert apply("apply SAVE20", "SAVE20") == ["Your cart is empty. Add something first, then I can apply SAVE20."]
