"""Order lookup and changes: the lifecycle decides, refusals are clear and change nothing."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import select

from shop.db import session_scope
from shop.models import ORDER_STATUSES, Customer, DiscountCode, Order, Refund, Variant
from shop.orders import (
    ALLOWED_TRANSITIONS,
    InvalidOrderNumber,
    OrderNotFound,
    OrderRefusal,
    cancel_order,
    change_quantity,
    change_shipping_address,
    normalise_order_number,
    order_summary,
    orders_for_customer,
    remove_line,
    set_status,
)
from tests.unit.service_helpers import catalog, item_id, make_order, snapshot

TODAY = date(2024, 6, 15)


def refused(engine, call, code: str) -> OrderRefusal:
    """Run `call(session)` expecting a refusal with `code`; the caller catches it and commits its unit of
    work anyway (as an action would), and still every table is unchanged."""
    before = snapshot(engine)
    with session_scope(engine) as session:
        with pytest.raises(OrderRefusal) as caught:
            call(session)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message
    assert snapshot(engine) == before
    return caught.value


def stock(engine, name_variant_id: int) -> int:
    with session_scope(engine) as session:
        return session.get(Variant, name_variant_id).stock


# -- order numbers -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["SH-100001", "sh100001", "#SH-100001", " SH 100001 ", "#100001", "100001", "Sh_100001"])
def test_order_numbers_are_normalised(text):
    assert normalise_order_number(text) == "SH-100001"


@pytest.mark.parametrize("text", ["", "SH-1001", "SH-10000A", "XY-100001", "SH--100001x", "order please", None,
                                  "SH-100001; DROP TABLE orders"])
def test_malformed_order_numbers_are_rejected_clearly(text):
    with pytest.raises(InvalidOrderNumber) as caught:
        normalise_order_number(text)
    assert caught.value.code == "invalid_order_number"
    assert "SH-100001" in caught.value.message


# -- summaries -----------------------------------------------------------------------------------

def test_summary_of_a_shipped_order_in_plain_words(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 2)], status="shipped", carrier="UPS",
                   tracking_number="1Z999AA10123456784", estimated_delivery=date(2024, 6, 18))
    with session_scope(engine) as session:
        s = order_summary(session, "sh100001", today=TODAY)
    assert s.number == "SH-100001" and s.status == "shipped"
    assert s.status_text == "shipped and on its way"
    assert [(i.product_title, i.variant_label, i.quantity, i.line_total_cents) for i in s.items] == [
        ("Canvas Sneakers", "red / 42", 1, 5000), ("Everyday Tee", "white / M", 2, 3000)]
    assert s.carrier == "UPS" and s.tracking_number == "1Z999AA10123456784"
    assert s.tracking_url == "https://www.ups.com/track?tracknum=1Z999AA10123456784"
    assert s.estimated_delivery == date(2024, 6, 18) and s.is_late is False
    assert s.next_step == "It's on its way with UPS and should arrive by Tuesday, June 18, 2024."
    assert (s.can_cancel, s.can_change_address, s.can_change_items, s.can_return) == (False, False, False, False)
    assert s.total_cents == 8000 + 0 + 640
    assert "1Z999AA10123456784" in s.text() and s.to_dict()["estimated_delivery"] == "2024-06-18"


def test_an_order_past_its_estimate_is_late(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="shipped", carrier="FedEx",
                   tracking_number="123456789012", estimated_delivery=date(2024, 6, 18))
    with session_scope(engine) as session:
        on_the_day = order_summary(session, "SH-100001", today=date(2024, 6, 18))
        late = order_summary(session, "SH-100001", today=date(2024, 6, 19))
    assert on_the_day.is_late is False
    assert late.is_late is True
    assert late.next_step.startswith("It's running late: FedEx estimated Tuesday, June 18, 2024.")
    assert late.tracking_url == "https://www.fedex.com/fedextrack/?trknbr=123456789012"


def test_a_delivered_order_is_not_late_and_shows_the_return_deadline(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="delivered", carrier="USPS",
                   tracking_number="9400100000000000000000", estimated_delivery=date(2024, 5, 30),
                   delivered_at=datetime(2024, 6, 1, 14, 0))
    with session_scope(engine) as session:
        s = order_summary(session, "SH-100001", today=TODAY)
    assert s.is_late is False and s.can_return is True and s.return_deadline == date(2024, 7, 1)
    assert "you can return it until Monday, July 1, 2024" in s.next_step


def test_unknown_and_someone_elses_orders_read_the_same(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], email="sam@example.com")
    with session_scope(engine) as session:
        with pytest.raises(OrderNotFound) as unknown:
            order_summary(session, "SH-100999", owner_email="sam@example.com")
        with pytest.raises(OrderNotFound) as other:
            order_summary(session, "SH-100001", owner_email="mallory@example.com")
        with pytest.raises(InvalidOrderNumber):
            order_summary(session, "SH-1")
        assert order_summary(session, "SH-100001", owner_email="SAM@Example.com ").number == "SH-100001"
    assert unknown.value.code == other.value.code == "order_not_found"
    assert other.value.message == unknown.value.message.replace("SH-100999", "SH-100001")


def test_orders_for_customer_most_recent_first(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        alex = Customer(email="alex.morgan@example.com", first_name="Alex", last_name="Morgan")
        session.add(alex)
        make_order(session, "SH-100001", [(v["tee"], 1)], email="Alex.Morgan@example.com",
                   placed_at=datetime(2024, 3, 1))
        make_order(session, "SH-100002", [(v["tee"], 1)], email="alex.old@example.com", customer=alex,
                   placed_at=datetime(2024, 6, 1))  # placed with another email, on the account
        make_order(session, "SH-100003", [(v["tee"], 1)], email="alex.morgan@example.com",
                   placed_at=datetime(2024, 5, 1))
        make_order(session, "SH-100004", [(v["tee"], 1)], email="sam@example.com", placed_at=datetime(2024, 6, 10))
    with session_scope(engine) as session:
        numbers = [s.number for s in orders_for_customer(session, " ALEX.MORGAN@example.com", today=TODAY)]
        latest = orders_for_customer(session, "alex.morgan@example.com", limit=1)
        nobody = orders_for_customer(session, "nobody@example.com")
    assert numbers == ["SH-100002", "SH-100003", "SH-100001"]
    assert [s.number for s in latest] == ["SH-100002"]
    assert nobody == []


# -- lifecycle -----------------------------------------------------------------------------------

def test_the_transition_table_covers_every_status():
    assert set(ALLOWED_TRANSITIONS) == set(ORDER_STATUSES)
    for targets in ALLOWED_TRANSITIONS.values():
        assert set(targets) <= set(ORDER_STATUSES)
    assert "cancelled" not in ALLOWED_TRANSITIONS["shipped"]
    assert "cancelled" not in ALLOWED_TRANSITIONS["delivered"]
    assert ALLOWED_TRANSITIONS["cancelled"] == frozenset()


def test_back_office_moves_follow_the_table(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="paid")
    refused(engine, lambda s: set_status(s, "SH-100001", "delivered"), "invalid_transition")
    with session_scope(engine) as session:
        set_status(session, "SH-100001", "packed")
    refused(engine, lambda s: set_status(s, "SH-100001", "shipped"), "carrier_required")
    with session_scope(engine) as session:
        set_status(session, "SH-100001", "shipped", carrier="UPS", tracking_number="1Z1",
                   estimated_delivery=date(2024, 6, 20))
        set_status(session, "SH-100001", "delivered", now=datetime(2024, 6, 19, 12))
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.status, order.carrier, order.delivered_at) == ("delivered", "UPS", datetime(2024, 6, 19, 12))
    refused(engine, lambda s: set_status(s, "SH-100001", "paid"), "invalid_transition")


# -- address -------------------------------------------------------------------------------------

def test_the_address_changes_before_shipping(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="packed")
    with session_scope(engine) as session:
        result = change_shipping_address(session, "#sh-100001", address_line=" 12  Oak Avenue ", city="Seattle, WA",
                                         postcode="98101", owner_email="sam@example.com")
    assert result.new_address == "12 Oak Avenue, Seattle, WA, 98101, United States"
    assert result.old_address == "742 Maple Street, Portland, OR, 97205, United States"
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.shipping_address, order.shipping_city, order.shipping_postcode) == (
            "12 Oak Avenue", "Seattle, WA", "98101")
        result = change_shipping_address(session, "SH-100001", address_line="10 Downing Street", city="London",
                                         postcode="sw1a 2aa", country="UK", name="Sam R")
    assert result.new_address == "10 Downing Street, London, SW1A 2AA, United Kingdom"


@pytest.mark.parametrize("status, code", [("shipped", "already_shipped"), ("delivered", "already_delivered"),
                                          ("cancelled", "order_cancelled")])
def test_the_address_cannot_change_after_shipping(engine, status, code):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status=status, carrier="UPS",
                   delivered_at=datetime(2024, 6, 1) if status == "delivered" else None)
    refusal = refused(engine, lambda s: change_shipping_address(
        s, "SH-100001", address_line="1 New Road", city="Austin, TX", postcode="78701"), code)
    if status == "shipped":
        assert refusal.message.startswith("Order SH-100001 has already shipped with UPS")
        assert refusal.suggestion == "start_return"


@pytest.mark.parametrize("fields, code", [
    (dict(address_line="", city="Austin, TX", postcode="78701"), "invalid_address"),
    (dict(address_line="1 New Road", city="  ", postcode="78701"), "invalid_address"),
    (dict(address_line="1 New Road", city="Austin, TX", postcode="7870"), "invalid_address"),
    (dict(address_line="1 Rue de Rivoli", city="Paris", postcode="75001", country="France"), "country_not_shipped"),
])
def test_a_bad_new_address_is_refused_and_nothing_changes(engine, fields, code):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="paid")
    refusal = refused(engine, lambda s: change_shipping_address(s, "SH-100001", **fields), code)
    if code == "country_not_shipped":
        assert refusal.message.startswith("Sorry, we don't ship to France.")


# -- items ---------------------------------------------------------------------------------------

def test_raising_a_quantity_on_an_unpaid_order_reprices_it(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        tee = v["tee"].id
        order = make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 1)], status="pending_payment")
        assert (order.subtotal_cents, order.shipping_cents, order.tax_cents, order.total_cents) == (6500, 599, 520, 7619)
        line = item_id(session, "SH-100001", "Everyday Tee")
    with session_scope(engine) as session:
        result = change_quantity(session, "SH-100001", line, 2)
    assert (result.old_total_cents, result.new_total_cents, result.refund_cents) == (7619, 8640, 0)
    assert "The new total is $86.40" in result.message
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.subtotal_cents, order.shipping_cents, order.tax_cents, order.total_cents) == (8000, 0, 640, 8640)
        assert session.execute(select(Refund)).first() is None
    assert stock(engine, tee) == 19


def test_lowering_a_quantity_on_a_paid_order_refunds_the_difference(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        sneakers = v["sneakers42"].id
        make_order(session, "SH-100001", [(v["sneakers42"], 2), (v["tee"], 1)], status="paid")
        line = item_id(session, "SH-100001", "Canvas Sneakers")
    with session_scope(engine) as session:
        result = change_quantity(session, "SH-100001", line, 1)
    assert (result.old_total_cents, result.new_total_cents, result.refund_cents) == (12420, 7619, 4801)
    assert "We're refunding the difference of $48.01" in result.message
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.subtotal_cents, order.shipping_cents, order.tax_cents, order.total_cents) == (6500, 599, 520, 7619)
        refund = session.execute(select(Refund)).scalar_one()
        assert (refund.amount_cents, refund.status, refund.method, refund.order_id) == (
            4801, "pending", "original_payment", order.id)
    assert stock(engine, sneakers) == 21


def test_a_category_discount_code_is_reapplied(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        code = DiscountCode(code="SHOES15", kind="percent", value=15, category_id=v["sneakers42"].product.category_id)
        session.add(code)
        session.flush()
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 1)], status="pending_payment",
                   discount_code=code, discount_cents=750)
        line = item_id(session, "SH-100001", "Canvas Sneakers")
    with session_scope(engine) as session:
        change_quantity(session, "SH-100001", line, 2)
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        assert (order.subtotal_cents, order.discount_cents, order.shipping_cents, order.tax_cents,
                order.total_cents) == (11500, 1500, 0, 800, 10800)


def test_a_change_that_would_cost_a_paid_order_its_discount_is_refused(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        code = DiscountCode(code="TAKE25", kind="fixed", value=2500, min_spend_cents=15000)
        session.add(code)
        session.flush()
        order = make_order(session, "SH-100001", [(v["sneakers42"], 2), (v["tee"], 4)], status="paid",
                           discount_code=code, discount_cents=2500)
        assert order.total_cents == 14580
        line = item_id(session, "SH-100001", "Everyday Tee")
    refusal = refused(engine, lambda s: change_quantity(s, "SH-100001", line, 3), "total_would_increase")
    assert "code TAKE25 needs a minimum spend of $150.00" in refusal.message


@pytest.mark.parametrize("status, code", [("packed", "already_packed"), ("shipped", "already_shipped"),
                                          ("delivered", "already_delivered"), ("cancelled", "order_cancelled")])
def test_items_cannot_change_once_packed(engine, status, code):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["sneakers42"], 2), (v["tee"], 1)], status=status)
        line = item_id(session, "SH-100001", "Canvas Sneakers")
    refused(engine, lambda s: change_quantity(s, "SH-100001", line, 1), code)
    refused(engine, lambda s: remove_line(s, "SH-100001", line), code)


@pytest.mark.parametrize("status, quantity, code", [
    ("paid", 3, "paid_order_increase"),
    ("pending_payment", 11, "invalid_quantity"),
    ("pending_payment", -1, "invalid_quantity"),
    ("pending_payment", "two", "invalid_quantity"),
    ("pending_payment", 5, "not_enough_stock"),  # the jacket has 2 in stock: 1 more is the most
])
def test_bad_quantity_changes_are_refused(engine, status, quantity, code):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["jacket"], 1), (v["tee"], 1)], status=status)
        line = item_id(session, "SH-100001", "Clearance Jacket")
    refused(engine, lambda s: change_quantity(s, "SH-100001", line, quantity), code)


def test_items_not_on_the_order_are_refused(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1), (v["sneakers42"], 1)], status="paid")
        make_order(session, "SH-100002", [(v["tee"], 1)], status="paid", email="other@example.com")
        others = item_id(session, "SH-100002", "Everyday Tee")
    refused(engine, lambda s: change_quantity(s, "SH-100001", others, 1), "item_not_on_order")
    refused(engine, lambda s: remove_line(s, "SH-100001", 999999), "item_not_on_order")


def test_removing_a_line_and_refusing_the_last_one(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 1)], status="paid")
        sneakers = item_id(session, "SH-100001", "Canvas Sneakers")
        tee = item_id(session, "SH-100001", "Everyday Tee")
    with session_scope(engine) as session:
        result = remove_line(session, "SH-100001", tee)
    # 6500 + 599 + 520 = 7619 -> 5000 + 599 + 400 = 5999
    assert (result.action, result.refund_cents, result.new_total_cents) == ("line_removed", 1620, 5999)
    with session_scope(engine) as session:
        assert [i.product_title for i in session.execute(select(Order)).scalar_one().items] == ["Canvas Sneakers"]
    refusal = refused(engine, lambda s: remove_line(s, "SH-100001", sneakers), "last_item")
    assert refusal.suggestion == "cancel_order"
    refused(engine, lambda s: change_quantity(s, "SH-100001", sneakers, 0), "last_item")


def test_someone_elses_order_cannot_be_changed(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 2), (v["sneakers42"], 1)], status="paid")
        line = item_id(session, "SH-100001", "Everyday Tee")
    refused(engine, lambda s: change_quantity(s, "SH-100001", line, 1, owner_email="mallory@example.com"),
            "order_not_found")
    refused(engine, lambda s: cancel_order(s, "SH-100001", owner_email="mallory@example.com"), "order_not_found")
    refused(engine, lambda s: cancel_order(s, "SH-1000"), "invalid_order_number")


# -- cancelling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["paid", "packed"])
def test_cancelling_a_paid_order_refunds_what_was_paid(engine, status):
    with session_scope(engine) as session:
        v = catalog(session)
        sneakers, tee = v["sneakers42"].id, v["tee"].id
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 1)], status=status)
    with session_scope(engine) as session:
        result = cancel_order(session, "sh-100001", owner_email="sam@example.com")
    assert result.refund_cents == 7619 and result.refund_id is not None
    assert result.message.startswith("Order SH-100001 is cancelled. I've started a refund of $76.19.")
    assert "3-5 business days" in result.refund_timing
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        refund = session.execute(select(Refund)).scalar_one()
        assert order.status == "cancelled"
        assert (refund.id, refund.amount_cents, refund.status) == (result.refund_id, 7619, "pending")
    assert (stock(engine, sneakers), stock(engine, tee)) == (21, 21)
    refused(engine, lambda s: cancel_order(s, "SH-100001"), "already_cancelled")


def test_cancelling_an_unpaid_order_refunds_nothing(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status="pending_payment")
    with session_scope(engine) as session:
        result = cancel_order(session, "SH-100001")
    assert (result.refund_cents, result.refund_id, result.refund_timing) == (0, None, "")
    assert "nothing was charged" in result.message
    with session_scope(engine) as session:
        assert session.execute(select(Order.status)).scalar_one() == "cancelled"
        assert session.execute(select(Refund)).first() is None


def test_cancelling_after_a_partial_refund_refunds_the_rest(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["sneakers42"], 2), (v["tee"], 1)], status="paid")
        line = item_id(session, "SH-100001", "Canvas Sneakers")
    with session_scope(engine) as session:
        change_quantity(session, "SH-100001", line, 1)
        result = cancel_order(session, "SH-100001")
    with session_scope(engine) as session:
        amounts = sorted(session.execute(select(Refund.amount_cents)).scalars())
    assert result.refund_cents == 7619 and amounts == [4801, 7619] and sum(amounts) == 12420


@pytest.mark.parametrize("status, code", [("shipped", "already_shipped"), ("delivered", "already_delivered"),
                                          ("return_requested", "already_delivered"),
                                          ("refunded", "already_delivered")])
def test_a_shipped_or_delivered_order_is_not_cancelled_but_steered_to_a_return(engine, status, code):
    with session_scope(engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["tee"], 1)], status=status, carrier="UPS",
                   delivered_at=None if status == "shipped" else datetime(2024, 6, 1, 9))
    refusal = refused(engine, lambda s: cancel_order(s, "SH-100001"), code)
    assert refusal.suggestion == "start_return"
    assert "30 days of delivery" in refusal.message
    if status == "delivered":
        assert refusal.message.startswith("Order SH-100001 was delivered on Saturday, June 1, 2024, so it can't be "
                                          "cancelled any more.")


# -- orders from checkout hold stock only once paid ------------------------------------------------

def checkout_order(session, number, lines, status="pending_payment", stock_taken=False):
    """An order as shop.checkout records it: its stock leaves the shelf only when it is paid."""
    from shop.checkout import CheckoutOrder
    from shop.models import Cart

    order = make_order(session, number, lines, status=status)
    cart = Cart(session_id="web-1", status="open", created_at=datetime(2024, 5, 1), updated_at=datetime(2024, 5, 1))
    session.add(cart)
    session.flush()
    session.add(CheckoutOrder(order_id=order.id, cart_id=cart.id, session_id="web-1",
                              created_at=datetime(2024, 5, 1), stock_taken_at=datetime(2024, 5, 1) if stock_taken else None))
    session.flush()
    return order


def test_changing_an_unpaid_checkout_order_moves_no_stock(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        sneakers, tee = v["sneakers42"].id, v["tee"].id
        checkout_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 2)])
        tee_line = item_id(session, "SH-100001", "Everyday Tee")
        sneakers_line = item_id(session, "SH-100001", "Canvas Sneakers")
    with session_scope(engine) as session:
        change_quantity(session, "SH-100001", tee_line, 5)
    with session_scope(engine) as session:
        remove_line(session, "SH-100001", sneakers_line)
    assert (stock(engine, sneakers), stock(engine, tee)) == (20, 20)


def test_an_unpaid_checkout_order_needs_the_whole_new_quantity_on_the_shelf(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        checkout_order(session, "SH-100001", [(v["jacket"], 1), (v["tee"], 1)])
        line = item_id(session, "SH-100001", "Clearance Jacket")
    refusal = refused(engine, lambda s: change_quantity(s, "SH-100001", line, 3), "not_enough_stock")
    assert refusal.message == "Only 2 of Clearance Jacket (navy / L) are in stock."


def test_cancelling_an_unpaid_checkout_order_gives_back_no_stock_and_no_code_use(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        tee = v["tee"].id
        code = DiscountCode(code="TEN", kind="percent", value=10, times_used=4)
        session.add(code)
        session.flush()
        order = checkout_order(session, "SH-100001", [(v["tee"], 2)])
        order.discount_code_id = code.id
    with session_scope(engine) as session:
        result = cancel_order(session, "SH-100001")
    assert result.refund_cents == 0
    assert stock(engine, tee) == 20
    with session_scope(engine) as session:
        assert session.execute(select(DiscountCode.times_used)).scalar_one() == 4
        assert session.execute(select(Order.status)).scalar_one() == "cancelled"


def test_cancelling_a_paid_checkout_order_gives_its_stock_back(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        tee = v["tee"].id
        checkout_order(session, "SH-100001", [(v["tee"], 2)], status="paid", stock_taken=True)
    with session_scope(engine) as session:
        cancel_order(session, "SH-100001")
    assert stock(engine, tee) == 22


def test_a_fixed_amount_category_code_only_discounts_that_category(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        code = DiscountCode(code="TEE20", kind="fixed", value=2000, category_id=v["tee"].product.category_id)
        session.add(code)
        session.flush()
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 1)], status="pending_payment",
                   discount_code=code, discount_cents=1500)
        line = item_id(session, "SH-100001", "Canvas Sneakers")
    with session_scope(engine) as session:
        change_quantity(session, "SH-100001", line, 2)
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        # $20 off T-shirts, but only $15 of T-shirts on the order: the sneakers are not discounted
        assert (order.subtotal_cents, order.discount_cents) == (11500, 1500)
        assert order.total_cents == 11500 - 1500 + 0 + 800
