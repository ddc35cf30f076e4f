"""Carts: adding within stock and limits, clear refusals that change nothing, repricing, merging carts."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from shop.carts import (
    MAX_LINE_QUANTITY,
    CartDiscount,
    CartError,
    add_item,
    attach_customer,
    cart_view,
    get_or_create_cart,
    remove_item,
    update_quantity,
)
from shop.db import session_scope
from shop.models import Cart, CartItem, Customer, DiscountCode, Variant
from shop.verification import VerificationSession
from tests.factories import add_product
from tests.unit.service_helpers import catalog, snapshot

NOW = datetime(2024, 6, 15, 12, 0)


@pytest.fixture
def shop(engine):
    """The tiny catalog: name -> variant id (sneakers 50.00, tee 15.00, cream 25.00, jacket 80.00 with 2 in stock)."""
    with session_scope(engine) as session:
        return {name: variant.id for name, variant in catalog(session).items()}


def refused(engine, call, code: str) -> CartError:
    before = snapshot(engine)
    with session_scope(engine) as session:
        with pytest.raises(CartError) as caught:
            call(session)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message
    assert snapshot(engine) == before
    return caught.value


def set_stock(engine, variant_id: int, stock: int, price: int = None) -> None:
    with session_scope(engine) as session:
        variant = session.get(Variant, variant_id)
        variant.stock = stock
        if price is not None:
            variant.price_cents = price


# -- adding and the view -------------------------------------------------------------------------

def test_an_item_added_shows_in_the_view_with_exact_totals(engine, shop):
    with session_scope(engine) as session:
        view = add_item(session, "chat-1", shop["tee"], 1, now=NOW)
    assert view.message == "Added 1 x Everyday Tee (white / M) to your cart."
    assert [(l.product_title, l.variant_label, l.quantity, l.unit_price_cents, l.line_total_cents) for l in view.lines] \
        == [("Everyday Tee", "white / M", 1, 1500, 1500)]
    # 15.00 + standard shipping 5.99 + 8% tax on 15.00 (1.20)
    assert (view.subtotal_cents, view.discount_cents, view.shipping_cents, view.tax_cents, view.total_cents) == (
        1500, 0, 599, 120, 2219)
    assert view.free_shipping_remaining_cents == 6000
    assert "Total: $22.19" in view.text()


def test_shipping_is_free_from_the_threshold_and_tax_rounds_half_up(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["sneakers42"], 1, now=NOW)
        view = add_item(session, "chat-1", shop["tee"], 2, now=NOW)
    assert view.message == "Added 2 x Everyday Tee (white / M) to your cart."
    assert (view.subtotal_cents, view.shipping_cents, view.tax_cents, view.total_cents) == (8000, 0, 640, 8640)
    assert view.free_shipping_remaining_cents == 0
    with session_scope(engine) as session:
        product = add_product(session, "Odd Socks", "Apparel", "Socks", "Bluefield", [("grey", "M", 7499, 5)])
        odd = product.variants[0].id
    with session_scope(engine) as session:
        view = add_item(session, "chat-2", odd, 1, now=NOW)
        express = cart_view(session, "chat-2", shipping_method="express")
    # 74.99 is one cent under the threshold; 8% of 74.99 = 5.9992 -> 6.00
    assert (view.subtotal_cents, view.shipping_cents, view.tax_cents, view.total_cents) == (7499, 599, 600, 8698)
    assert view.free_shipping_remaining_cents == 1
    assert (express.shipping_method, express.shipping_cents, express.total_cents) == ("express", 1299, 9398)


def test_adding_the_same_item_again_adds_to_the_line(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["tee"], 2, now=NOW)
        view = add_item(session, "chat-1", shop["tee"], "3", now=NOW)
    assert view.message == "Added 3 x Everyday Tee (white / M) to your cart (now 5)."
    assert [(l.quantity, l.line_total_cents) for l in view.lines] == [(5, 7500)]
    with session_scope(engine) as session:
        assert session.execute(select(CartItem.quantity)).scalars().all() == [5]
        assert session.execute(select(Cart.status)).scalar_one() == "open"


@pytest.mark.parametrize("quantity, code", [
    (0, "invalid_quantity"), (-1, "invalid_quantity"), (-10 ** 12, "invalid_quantity"),
    (21, "too_many"), (10 ** 30, "too_many"), ("1" * 40, "invalid_quantity"), ("two", "invalid_quantity"),
    (1.5, "invalid_quantity"), (True, "invalid_quantity"), (None, "invalid_quantity"), ("", "invalid_quantity"),
    ("3; DROP TABLE carts", "invalid_quantity"), (float("nan"), "invalid_quantity"),
])
def test_bad_quantities_are_refused_and_change_nothing(engine, shop, quantity, code):
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["tee"], quantity, now=NOW), code)
    if code == "too_many":
        assert error.message == "You can have at most 20 of one item in your cart."


def test_more_than_twenty_of_one_item_is_refused_across_adds(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["tee"], 18, now=NOW)
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["tee"], 3, now=NOW), "too_many")
    assert error.message == "You can have at most 20 of one item in your cart (you already have 18 in your cart)."
    with session_scope(engine) as session:
        assert add_item(session, "chat-1", shop["tee"], 2, now=NOW).lines[0].quantity == MAX_LINE_QUANTITY


def test_never_more_than_is_in_stock(engine, shop):
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["jacket"], 3, now=NOW), "not_enough_stock")
    assert error.message == "Only 2 of Clearance Jacket (navy / L) are in stock."
    assert error.details == {"available": 2, "in_cart": 0}
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["jacket"], 1, now=NOW)
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["jacket"], 2, now=NOW), "not_enough_stock")
    assert error.message == ("Only 2 of Clearance Jacket (navy / L) are in stock, and you already have 1 in your "
                             "cart. I can add 1 more.")


def test_sold_out_unpublished_and_unknown_items_are_refused(engine, shop):
    set_stock(engine, shop["cream"], 0)
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["cream"], 1, now=NOW), "sold_out")
    assert error.message == "Sorry, Glow Face Cream (white / One Size) is sold out."
    with session_scope(engine) as session:
        session.get(Variant, shop["tee"]).product.published = False
    error = refused(engine, lambda s: add_item(s, "chat-1", shop["tee"], 1, now=NOW), "not_sold")
    assert error.message == "Sorry, Everyday Tee (white / M) isn't sold any more."
    for bad in (999999, "abc", None, -3, 10 ** 40):
        refused(engine, lambda s: add_item(s, "chat-1", bad, 1, now=NOW), "unknown_item")


def test_a_blank_session_is_refused(engine, shop):
    refused(engine, lambda s: add_item(s, "  ", shop["tee"], 1, now=NOW), "no_session")


# -- changing lines --------------------------------------------------------------------------------

def test_update_quantity_within_stock_and_removal(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["tee"], 1, now=NOW)
        add_item(session, "chat-1", shop["jacket"], 1, now=NOW)
        view = update_quantity(session, "chat-1", shop["tee"], 4, now=NOW)
    assert view.message == "Updated Everyday Tee (white / M) to 4."
    assert [(l.product_title, l.quantity) for l in view.lines] == [("Everyday Tee", 4), ("Clearance Jacket", 1)]
    error = refused(engine, lambda s: update_quantity(s, "chat-1", shop["jacket"], 3, now=NOW), "not_enough_stock")
    assert error.message == "Only 2 of Clearance Jacket (navy / L) are in stock."
    refused(engine, lambda s: update_quantity(s, "chat-1", shop["tee"], -1, now=NOW), "invalid_quantity")
    refused(engine, lambda s: update_quantity(s, "chat-1", shop["tee"], 25, now=NOW), "too_many")
    refused(engine, lambda s: update_quantity(s, "chat-1", shop["cream"], 1, now=NOW), "not_in_cart")
    refused(engine, lambda s: update_quantity(s, "other-chat", shop["tee"], 1, now=NOW), "not_in_cart")
    with session_scope(engine) as session:
        view = update_quantity(session, "chat-1", shop["tee"], 0, now=NOW)
    assert view.message == "Removed Everyday Tee (white / M) from your cart."
    with session_scope(engine) as session:
        view = remove_item(session, "chat-1", shop["jacket"], now=NOW)
    assert view.is_empty and view.total_cents == 0 and view.text() == "Your cart is empty."
    refused(engine, lambda s: remove_item(s, "chat-1", shop["jacket"], now=NOW), "not_in_cart")


def test_lowering_is_allowed_even_when_stock_fell_below_the_cart(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["tee"], 5, now=NOW)
    set_stock(engine, shop["tee"], 2)
    with session_scope(engine) as session:
        view = cart_view(session, "chat-1")
        assert view.lines[0].note == "Only 2 left in stock" and not view.lines[0].orderable
        view = update_quantity(session, "chat-1", shop["tee"], 3, now=NOW)
    assert view.lines[0].quantity == 3


# -- prices that changed ---------------------------------------------------------------------------

def test_a_line_whose_price_changed_is_flagged_and_repriced(engine, shop):
    with session_scope(engine) as session:
        add_item(session, "chat-1", shop["sneakers42"], 1, now=NOW)
        add_item(session, "chat-1", shop["tee"], 1, now=NOW)
    set_stock(engine, shop["sneakers42"], 20, price=4500)
    with session_scope(engine) as session:
        view = cart_view(session, "chat-1")
    sneakers, tee = view.lines
    assert (sneakers.price_changed, sneakers.added_price_cents, sneakers.unit_price_cents, sneakers.line_total_cents) \
        == (True, 5000, 4500, 4500)
    assert sneakers.note == "The price dropped from $50.00 to $45.00 since you added it; it's shown at the new price"
    assert tee.price_changed is False and tee.note == ""
    assert view.has_price_changes
    assert (view.subtotal_cents, view.shipping_cents, view.tax_cents, view.total_cents) == (6000, 599, 480, 7079)
    assert sneakers.note in view.notes
    # the view only reads: the cart still remembers the price it was added at
    with session_scope(engine) as session:
        assert sorted(session.execute(select(CartItem.unit_price_cents)).scalars()) == [1500, 5000]


def test_the_view_of_a_session_without_a_cart_is_empty_and_creates_nothing(engine, shop):
    before = snapshot(engine)
    with session_scope(engine) as session:
        view = cart_view(session, "nobody")
    assert view.is_empty and view.cart_id is None and view.total_cents == 0
    assert snapshot(engine) == before


# -- customers and merging -------------------------------------------------------------------------

def _earlier_cart(engine, shop, email="sam@example.com"):
    with session_scope(engine) as session:
        add_item(session, "web-old", shop["tee"], 2, now=NOW)
        add_item(session, "web-old", shop["jacket"], 2, now=NOW)
        code = DiscountCode(code="SAVE20", kind="percent", value=20)
        session.add(code)
        session.flush()
        cart = get_or_create_cart(session, "web-old", now=NOW)
        session.add(CartDiscount(cart_id=cart.id, discount_code_id=code.id, applied_at=NOW))
        attach_customer(session, "web-old", email, verified=True, now=NOW)


def test_a_verified_returning_customer_gets_their_earlier_cart_merged(engine, shop):
    _earlier_cart(engine, shop)
    with session_scope(engine) as session:
        add_item(session, "chat-9", shop["tee"], 1, now=NOW)
        add_item(session, "chat-9", shop["jacket"], 1, now=NOW)
        session.add(VerificationSession(conversation_id="chat-9", verified_email="sam@example.com",
                                        verified_at=NOW, verified_via="email_code", updated_at=NOW))
    with session_scope(engine) as session:
        view = attach_customer(session, "chat-9", " Sam@Example.com ", now=NOW)
    # tee 1 + 2 = 3; jacket 1 + 2 capped at the 2 in stock
    assert [(l.product_title, l.quantity) for l in view.lines] == [("Everyday Tee", 3), ("Clearance Jacket", 2)]
    assert view.message == ("Welcome back! I've added the 3 items from your earlier cart. Note: only 2 of Clearance "
                            "Jacket (navy / L) could be kept (stock or the 20-item limit).")
    assert view.discount_code == "SAVE20"
    with session_scope(engine) as session:
        carts = {c.session_id: c for c in session.execute(select(Cart)).scalars()}
        customer = session.execute(select(Customer)).scalar_one()
        assert customer.email == "sam@example.com"
        assert (carts["web-old"].status, carts["web-old"].items) == ("abandoned", [])
        assert (carts["chat-9"].status, carts["chat-9"].customer_id) == ("open", customer.id)
        assert session.get(CartDiscount, carts["web-old"].id) is None


def test_an_unverified_email_never_pulls_in_somebody_elses_cart(engine, shop):
    _earlier_cart(engine, shop)
    with session_scope(engine) as session:
        add_item(session, "chat-9", shop["cream"], 1, now=NOW)
        view = attach_customer(session, "chat-9", "sam@example.com", now=NOW)
    assert [(l.product_title, l.quantity) for l in view.lines] == [("Glow Face Cream", 1)]
    assert view.message == "Thanks, your cart is saved under your email address."
    with session_scope(engine) as session:
        old = session.execute(select(Cart).where(Cart.session_id == "web-old")).scalar_one()
        assert old.status == "open" and len(old.items) == 2


def test_get_or_create_cart_with_a_new_email_creates_the_customer(engine, shop):
    with session_scope(engine) as session:
        cart = get_or_create_cart(session, "chat-5", email="new@example.org", now=NOW)
        again = get_or_create_cart(session, "chat-5", now=NOW)
        assert cart.id == again.id
    with session_scope(engine) as session:
        customer = session.execute(select(Customer).where(Customer.email == "new@example.org")).scalar_one()
        assert session.execute(select(Cart.customer_id)).scalar_one() == customer.id
    refused(engine, lambda s: attach_customer(s, "chat-5", "not an email", now=NOW), "invalid_email")
