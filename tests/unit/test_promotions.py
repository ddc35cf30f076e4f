"""Discount codes: every rule with its exact reason, exact amounts in cents, no stacking, personal offers."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from shop.carts import CartDiscount, add_item, cart_view, remove_item
from shop.db import session_scope
from shop.models import Category, Customer, DiscountCode, Order, Variant
from shop.promotions import (
    IssuedOffer,
    apply_code,
    first_order_code,
    loyalty_code,
    public_promotions,
    remove_code,
)
from tests.factories import add_product
from tests.unit.service_helpers import catalog, make_order, snapshot

NOW = datetime(2024, 6, 15, 12, 0)


@pytest.fixture
def shop(engine):
    """The tiny catalog plus the shop's codes as the demo seed defines them (relative to NOW)."""
    with session_scope(engine) as session:
        ids = {name: variant.id for name, variant in catalog(session).items()}
        ids["mug"] = add_product(session, "Trail Mug", "Home", "Mug", "Fogline", [("blue", "", 3200, 10)]).variants[0].id
        shoes = session.execute(select(Category.id).where(Category.name == "Shoes")).scalar_one()
        alex = Customer(email="alex@example.com", first_name="Alex")
        session.add(alex)
        session.flush()
        session.add_all([
            DiscountCode(code="WELCOME10", description="10% off your first order", kind="percent", value=10,
                         starts_at=NOW - timedelta(days=400), public=True, once_per_customer=True),
            DiscountCode(code="SAVE20", description="20% off everything", kind="percent", value=20,
                         starts_at=NOW - timedelta(days=30), ends_at=NOW + timedelta(days=45), usage_limit=1000,
                         public=True, once_per_customer=True),
            DiscountCode(code="SHOES15", description="15% off all shoes", kind="percent", value=15, category_id=shoes,
                         starts_at=NOW - timedelta(days=60), ends_at=NOW + timedelta(days=90), public=True,
                         once_per_customer=False),
            DiscountCode(code="FREESHIP", description="Free standard shipping over $50", kind="free_shipping",
                         value=0, min_spend_cents=5000, starts_at=NOW - timedelta(days=365), public=True,
                         once_per_customer=False),
            DiscountCode(code="TAKE25", description="$25 off $150", kind="fixed", value=2500, min_spend_cents=15000,
                         starts_at=NOW - timedelta(days=200), public=True, once_per_customer=True),
            DiscountCode(code="SPRING25", description="spring sale (ended)", kind="percent", value=25,
                         starts_at=datetime(2024, 3, 1), ends_at=datetime(2024, 5, 31, 23, 59, 59), public=True),
            DiscountCode(code="SUMMER30", description="summer sale", kind="percent", value=30,
                         starts_at=datetime(2024, 7, 1), public=True),
            DiscountCode(code="LIMITED5", description="first five only", kind="percent", value=5, usage_limit=5,
                         times_used=5, public=True, once_per_customer=False),
            DiscountCode(code="ALEX15", description="15% off for Alex", kind="percent", value=15,
                         starts_at=NOW - timedelta(days=90), ends_at=NOW + timedelta(days=180), public=False,
                         customer_id=alex.id, usage_limit=1, once_per_customer=True),
        ])
    return ids


def fill(engine, session_id: str, *lines) -> None:
    with session_scope(engine) as session:
        for variant_id, quantity in lines:
            add_item(session, session_id, variant_id, quantity, now=NOW)


def rejected(engine, session_id, code, reason, message, email=None):
    before = snapshot(engine)
    with session_scope(engine) as session:
        result = apply_code(session, session_id, code, NOW, email=email)
    assert (result.ok, result.reason, result.message) == (False, reason, message)
    assert snapshot(engine) == before


# -- every rejection, with its exact reason ------------------------------------------------------------

def test_expired_code(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    rejected(engine, "c", "spring25", "expired", "SPRING25 expired on 31 May.")


def test_code_not_started_yet(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    rejected(engine, "c", "SUMMER30", "not_started", "SUMMER30 starts on 1 July.")


def test_minimum_spend(engine, shop):
    fill(engine, "c", (shop["mug"], 1))
    rejected(engine, "c", "FREESHIP", "min_spend", "FREESHIP needs $50.00 in the cart; you have $32.00.")
    fill(engine, "d", (shop["sneakers42"], 2), (shop["tee"], 3))
    rejected(engine, "d", "TAKE25", "min_spend", "TAKE25 needs $150.00 in the cart; you have $145.00.")


def test_category_restriction(engine, shop):
    fill(engine, "c", (shop["tee"], 2))
    rejected(engine, "c", "SHOES15", "wrong_category", "SHOES15 only applies to Shoes.")


def test_usage_limit(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    rejected(engine, "c", "LIMITED5", "used_up", "LIMITED5 has already been used the maximum number of times.")


def test_unknown_missing_and_empty_cart(engine, shop):
    fill(engine, "c", (shop["tee"], 1))
    rejected(engine, "c", "NOPE99", "not_found", "I don't recognise the code NOPE99. Please check the spelling.")
    rejected(engine, "c", "   ", "missing_code", "Which discount code would you like to use?")
    rejected(engine, "empty", "SAVE20", "empty_cart", "Your cart is empty. Add something first, then I can apply SAVE20.")


def test_personal_code_only_for_its_customer(engine, shop):
    fill(engine, "c", (shop["tee"], 2))
    rejected(engine, "c", "ALEX15", "needs_email",
             "ALEX15 is a personal code. Please tell me the email address it was sent to first.")
    rejected(engine, "c", "ALEX15", "personal_code",
             "ALEX15 is a personal code for another customer, so it can't be used with this email address.",
             email="sam@example.com")
    with session_scope(engine) as session:
        result = apply_code(session, "c", "ALEX15", NOW, email="Alex@Example.com")
    assert result.ok and result.discount_cents == 450


def test_once_per_customer_counts_paid_orders_only(engine, shop):
    fill(engine, "c", (shop["tee"], 2))
    with session_scope(engine) as session:
        welcome = session.execute(select(DiscountCode).where(DiscountCode.code == "WELCOME10")).scalar_one()
        tee = session.get(Variant, shop["tee"])
        make_order(session, "SH-100001", [(tee, 1)], status="pending_payment", email="sam@example.com",
                   discount_code=welcome, discount_cents=150)
        make_order(session, "SH-100002", [(tee, 1)], status="cancelled", email="sam@example.com",
                   discount_code=welcome, discount_cents=150)
    with session_scope(engine) as session:  # unpaid and cancelled orders don't use it up
        assert apply_code(session, "c", "WELCOME10", NOW, email="sam@example.com").ok
        remove_code(session, "c", now=NOW)
        session.execute(select(Order).where(Order.number == "SH-100001")).scalar_one().status = "delivered"
    rejected(engine, "c", "WELCOME10", "already_used",
             "You've already used WELCOME10 on order SH-100001; it can be used once per customer.",
             email="SAM@example.com")


# -- amounts ---------------------------------------------------------------------------------------------

def test_percent_code_on_the_whole_cart(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 1), (shop["tee"], 2))
    with session_scope(engine) as session:
        result = apply_code(session, "c", " save 20 ", NOW)
    assert result.ok and result.reason == "" and result.code == "SAVE20"
    assert result.message == "SAVE20 applied: 20% off, you save $16.00."
    view = result.view
    # 80.00 - 16.00 = 64.00 is under the 75.00 threshold: shipping 5.99; tax 8% of 64.00
    assert (view.subtotal_cents, view.discount_cents, view.shipping_cents, view.tax_cents, view.total_cents) == (
        8000, 1600, 599, 512, 7511)
    assert view.discount_code == "SAVE20"


def test_category_code_discounts_only_matching_lines(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 1), (shop["tee"], 1))
    with session_scope(engine) as session:
        result = apply_code(session, "c", "SHOES15", NOW)
    assert result.message == "SHOES15 applied: 15% off Shoes, you save $7.50."
    v = result.view
    assert (v.subtotal_cents, v.discount_cents, v.shipping_cents, v.tax_cents, v.total_cents) == (6500, 750, 599, 460, 6809)
    # without the shoes the code no longer applies: the view says so and charges full price
    with session_scope(engine) as session:
        view = remove_item(session, "c", shop["sneakers42"], now=NOW)
    assert view.discount_cents == 0 and view.discount_code == "SHOES15"
    assert view.discount_note == "Code SHOES15 doesn't apply right now: SHOES15 only applies to Shoes."
    assert view.total_cents == 1500 + 599 + 120


def test_fixed_code_and_free_shipping_code(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 3))
    with session_scope(engine) as session:
        result = apply_code(session, "c", "TAKE25", NOW)
    assert result.message == "TAKE25 applied: $25.00 off, you save $25.00."
    v = result.view
    assert (v.subtotal_cents, v.discount_cents, v.shipping_cents, v.tax_cents, v.total_cents) == (
        15000, 2500, 0, 1000, 13500)
    fill(engine, "d", (shop["sneakers42"], 1))
    with session_scope(engine) as session:
        result = apply_code(session, "d", "freeship", NOW)
        express = cart_view(session, "d", shipping_method="express", now=NOW)
    assert result.message == "FREESHIP applied: free standard shipping."
    v = result.view
    assert (v.subtotal_cents, v.discount_cents, v.shipping_cents, v.tax_cents, v.total_cents) == (5000, 0, 0, 400, 5400)
    assert (express.shipping_cents, express.total_cents) == (1299, 6699)  # free shipping is standard only


def test_no_stacking_a_second_code_replaces_the_first(engine, shop):
    fill(engine, "c", (shop["sneakers42"], 1), (shop["tee"], 2))
    with session_scope(engine) as session:
        assert apply_code(session, "c", "WELCOME10", NOW).discount_cents == 800
        result = apply_code(session, "c", "SAVE20", NOW)
    assert result.ok and result.replaced_code == "WELCOME10"
    assert result.message == "SAVE20 applied: 20% off, you save $16.00. It replaces WELCOME10: one code per order."
    # a code that fails leaves the applied one in place
    rejected(engine, "c", "SPRING25", "expired", "SPRING25 expired on 31 May.")
    with session_scope(engine) as session:
        again = apply_code(session, "c", "save20", NOW)
        assert (again.ok, again.reason, again.message) == (True, "already_applied", "SAVE20 is already applied to your cart.")
        assert len(session.execute(select(CartDiscount)).scalars().all()) == 1
        assert cart_view(session, "c", now=NOW).discount_code == "SAVE20"
        removed = remove_code(session, "c", now=NOW)
    assert removed.message == "I've removed SAVE20 from your cart."
    with session_scope(engine) as session:
        assert remove_code(session, "c", now=NOW).reason == "no_code"


# -- public promotions -----------------------------------------------------------------------------------

def test_public_promotions_are_the_usable_public_codes(engine, shop):
    with session_scope(engine) as session:
        promotions = public_promotions(session, NOW)
    assert [p.code for p in promotions] == ["FREESHIP", "SAVE20", "SHOES15", "TAKE25", "WELCOME10"]
    texts = {p.code: p.text for p in promotions}
    assert texts["SAVE20"] == "SAVE20: 20% off (until 30 July)"
    assert texts["SHOES15"] == "SHOES15: 15% off Shoes (until 13 September)"
    assert texts["FREESHIP"] == "FREESHIP: free standard shipping on orders of $50.00 or more"
    assert texts["TAKE25"] == "TAKE25: $25.00 off on orders of $150.00 or more"
    with session_scope(engine) as session:
        later = [p.code for p in public_promotions(session, datetime(2024, 7, 2))]
    assert "SUMMER30" in later


def test_the_seeded_demo_codes(demo_store):
    engine, _report = demo_store
    with session_scope(engine) as session:
        seeded = {c.code: c for c in session.execute(select(DiscountCode)).scalars()}
        now = seeded["SAVE20"].starts_at + timedelta(days=30)  # the seed's reference moment
        assert [p.code for p in public_promotions(session, now)] == ["FREESHIP", "SAVE20", "SHOES15", "TAKE25",
                                                                     "WELCOME10"]
        result = apply_code(session, "demo-chat", "SPRING25", now)
        ends = seeded["SPRING25"].ends_at
        assert result.message == f"SPRING25 expired on {ends.day} {ends:%B}."
        session.rollback()


# -- personal offers -------------------------------------------------------------------------------------

def test_first_order_code_is_issued_once_and_recorded(engine, shop):
    with session_scope(engine) as session:
        offer = first_order_code(session, "New@Example.org", NOW)
    assert offer.ok and offer.newly_issued and offer.code.startswith("FIRST") and offer.percent == 10
    assert offer.message == f"Here's your personal code {offer.code}: 10% off your first order, valid until 15 July."
    with session_scope(engine) as session:
        again = first_order_code(session, "new@example.org", NOW + timedelta(days=1))
        assert (again.ok, again.code, again.newly_issued) == (True, offer.code, False)
        code = session.execute(select(DiscountCode).where(DiscountCode.code == offer.code)).scalar_one()
        customer = session.execute(select(Customer).where(Customer.email == "new@example.org")).scalar_one()
        assert (code.customer_id, code.kind, code.value, code.usage_limit, code.public) == (
            customer.id, "percent", 10, 1, False)
        assert code.ends_at == NOW + timedelta(days=30)
        issued = session.execute(select(IssuedOffer)).scalars().all()
        assert [(i.customer_id, i.kind, i.discount_code_id) for i in issued] == [(customer.id, "first_order", code.id)]
    fill(engine, "c", (shop["tee"], 2))
    rejected(engine, "c", offer.code, "personal_code",
             f"{offer.code} is a personal code for another customer, so it can't be used with this email address.",
             email="sam@example.com")
    with session_scope(engine) as session:
        assert apply_code(session, "c", offer.code, NOW, email="new@example.org").discount_cents == 300


def test_first_order_code_is_not_for_customers_with_orders_and_loyalty_is(engine, shop):
    with session_scope(engine) as session:
        make_order(session, "SH-100001", [(session.get(Variant, shop["tee"]), 1)], status="delivered",
                   email="sam@example.com")
    with session_scope(engine) as session:
        first = first_order_code(session, "sam@example.com", NOW)
        assert (first.ok, first.reason) == (False, "has_orders")
        assert first.message == "The first-order offer is for new customers, and you've ordered with us before."
        none = loyalty_code(session, "newbie@example.com", NOW)
        assert (none.ok, none.reason) == (False, "no_orders")
        loyal = loyalty_code(session, "sam@example.com", NOW)
        assert loyal.ok and loyal.newly_issued and loyal.code.startswith("THANKS") and loyal.percent == 15
        assert loyalty_code(session, "sam@example.com", NOW).code == loyal.code
        assert loyalty_code(session, "bad email", NOW).reason == "invalid_email"
    with session_scope(engine) as session:
        assert session.execute(select(IssuedOffer.kind)).scalars().all() == ["loyalty"]
        later = loyalty_code(session, "sam@example.com", NOW + timedelta(days=61))
        assert (later.ok, later.reason, later.code) == (False, "expired", loyal.code)
