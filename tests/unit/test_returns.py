"""Returns and refunds: eligibility per item, RMA + label, exact refusals that change nothing."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
import yaml
from sqlalchemy import select

from shop.db import session_scope
from shop.models import Order, Refund, Return
from shop.orders import OrderNotFound, OrderRefusal
from shop.policy import DEFAULT_POLICY_FILE
from shop.returns import ReturnRefusal, refund_status, refunds_for_customer, return_eligibility, start_return
from tests.unit.service_helpers import catalog, item_id, make_order, snapshot

TODAY = date(2024, 6, 15)
DELIVERED = datetime(2024, 6, 1, 14, 0)  # return window: until July 1


def delivered_order(session, number="SH-100001", **extra):
    v = catalog(session)
    lines = [(v["sneakers42"], 2), (v["tee"], 1), (v["cream"], 1), (v["jacket"], 1)]
    fields = dict(status="delivered", delivered_at=DELIVERED, carrier="UPS", tracking_number="1Z1")
    fields.update(extra)
    return make_order(session, number, lines, **fields)


def items(session, number="SH-100001"):
    return {title: item_id(session, number, title)
            for title in ("Canvas Sneakers", "Everyday Tee", "Glow Face Cream", "Clearance Jacket")}


def refused(engine, call, code: str) -> OrderRefusal:
    before = snapshot(engine)
    with session_scope(engine) as session:  # the caller catches the refusal and commits: still nothing changed
        with pytest.raises(OrderRefusal) as caught:
            call(session)
    assert caught.value.code == code, caught.value.message
    assert snapshot(engine) == before
    return caught.value


# -- eligibility ---------------------------------------------------------------------------------

def test_eligibility_per_item(engine):
    with session_scope(engine) as session:
        delivered_order(session)
    with session_scope(engine) as session:
        e = return_eligibility(session, "sh100001", TODAY)
    assert (e.delivered_on, e.deadline, e.days_left, e.window_days) == (date(2024, 6, 1), date(2024, 7, 1), 16, 30)
    by_title = {i.product_title: i for i in e.items}
    assert (by_title["Canvas Sneakers"].eligible, by_title["Canvas Sneakers"].returnable_quantity) == (True, 2)
    assert by_title["Everyday Tee"].eligible is True
    assert by_title["Glow Face Cream"].reason_code == "final_sale"
    assert "Beauty items are final sale" in by_title["Glow Face Cream"].reason
    assert by_title["Clearance Jacket"].reason_code == "final_sale"
    assert "clearance items are final sale" in by_title["Clearance Jacket"].reason
    assert e.message == "You can return items from order SH-100001 until Monday, July 1, 2024 (16 days left)."


@pytest.mark.parametrize("status", ["pending_payment", "paid", "packed", "shipped"])
def test_nothing_is_returnable_before_delivery(engine, status):
    with session_scope(engine) as session:
        delivered_order(session, status=status, delivered_at=None)
    with session_scope(engine) as session:
        e = return_eligibility(session, "SH-100001", TODAY)
    assert not e.any_eligible
    assert {i.reason_code for i in e.items} == {"not_delivered"}
    assert e.message.startswith("Order SH-100001 hasn't been delivered yet")


@pytest.mark.parametrize("today, eligible, days_left", [
    (date(2024, 7, 1), True, 0), (date(2024, 7, 2), False, -1), (date(2024, 7, 16), False, -15),
])
def test_the_window_counts_from_delivery(engine, today, eligible, days_left):
    with session_scope(engine) as session:
        delivered_order(session)
    with session_scope(engine) as session:
        e = return_eligibility(session, "SH-100001", today)
    assert e.days_left == days_left
    sneakers = next(i for i in e.items if i.product_title == "Canvas Sneakers")
    assert sneakers.eligible is eligible
    if not eligible:
        late = -days_left
        assert sneakers.reason_code == "outside_window"
        assert sneakers.reason == (f"The 30-day return window for order SH-100001 closed on Monday, July 1, 2024, "
                                   f"{late} day{'s' if late != 1 else ''} ago, so it can't be returned any more.")


def test_the_window_comes_from_the_policy_file(engine, tmp_path, monkeypatch):
    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    data["returns"]["window_days"] = 60
    data["returns"]["final_sale"]["categories"] = []
    path = tmp_path / "policies.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("SHOP_POLICY_FILE", str(path))
    with session_scope(engine) as session:
        delivered_order(session)
    with session_scope(engine) as session:
        e = return_eligibility(session, "SH-100001", date(2024, 7, 20))
    assert e.deadline == date(2024, 7, 31)
    assert {i.product_title for i in e.eligible_items} == {"Canvas Sneakers", "Everyday Tee", "Glow Face Cream"}


# -- starting a return ---------------------------------------------------------------------------

def test_starting_a_return(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    with session_scope(engine) as session:
        started = start_return(session, "SH-100001", {ids["Canvas Sneakers"]: 1}, "Too small", "refund",
                               today=TODAY, owner_email="sam@example.com", now=datetime(2024, 6, 15, 9))
    assert re.fullmatch(r"RMA-\d{6}", started.rma_number)
    assert started.label_url == f"http://localhost:8000/returns/{started.rma_number}/label"
    assert started.prepaid_label is True
    # 14000 subtotal, 1120 tax: one 50.00 pair refunds 5000 * 15120 // 14000
    assert started.refund_cents == 5400
    assert [(line.label, line.quantity) for line in started.items] == [("Canvas Sneakers (red / 42)", 1)]
    assert started.rma_number in started.message and "The label is prepaid." in started.message
    assert "Refund: $54.00." in started.message
    with session_scope(engine) as session:
        order = session.execute(select(Order)).scalar_one()
        ret = session.execute(select(Return)).scalar_one()
        refund = session.execute(select(Refund)).scalar_one()
        assert order.status == "return_requested"
        assert (ret.rma_number, ret.status, ret.reason, ret.resolution) == (started.rma_number, "requested",
                                                                           "Too small", "refund")
        assert [(i.order_item_id, i.quantity) for i in ret.items] == [(ids["Canvas Sneakers"], 1)]
        assert (refund.return_id, refund.amount_cents, refund.status, refund.method) == (
            ret.id, 5400, "pending", "original_payment")


def test_a_second_return_of_the_rest_then_nothing_left(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    with session_scope(engine) as session:
        first = start_return(session, "SH-100001", {ids["Canvas Sneakers"]: 1}, "Too small", "refund", today=TODAY)
    with session_scope(engine) as session:
        e = return_eligibility(session, "SH-100001", TODAY)
        sneakers = next(i for i in e.items if i.order_item_id == ids["Canvas Sneakers"])
        assert (sneakers.returned_quantity, sneakers.returnable_quantity) == (1, 1)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Canvas Sneakers"]: 2}, "", "refund",
                                                     today=TODAY), "quantity_exceeds")
    assert refusal.message == ("You bought 2 x Canvas Sneakers (red / 42), and 1 is already on a return, "
                               "so you can return at most 1, not 2.")
    with session_scope(engine) as session:
        second = start_return(session, "SH-100001", {str(ids["Canvas Sneakers"]): "1", ids["Everyday Tee"]: 1},
                              "Changed my mind", "store_credit", today=TODAY)
    assert second.rma_number != first.rma_number
    assert second.refund_cents == (5000 + 1500) * 15120 // 14000
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Canvas Sneakers"]: 1}, "", "refund",
                                                     today=TODAY), "already_returned")
    assert refusal.message == "Canvas Sneakers (red / 42) is already on a return (all of them)."
    with session_scope(engine) as session:
        methods = sorted(session.execute(select(Refund.method)).scalars())
        assert methods == ["original_payment", "store_credit"]


def test_an_exchange_has_no_refund_and_an_international_return_no_prepaid_label(engine):
    with session_scope(engine) as session:
        delivered_order(session, country="GB", postcode="SW1A 1AA", city="London")
        ids = items(session)
    with session_scope(engine) as session:
        started = start_return(session, "SH-100001", {ids["Everyday Tee"]: 1}, "Too large", "exchange", today=TODAY)
    assert (started.refund_cents, started.refund_id, started.prepaid_label) == (0, None, False)
    assert "Please pay the return postage" in started.message and "Exchanges ship free" in started.message
    with session_scope(engine) as session:
        assert session.execute(select(Refund)).first() is None
        assert session.execute(select(Return.resolution)).scalar_one() == "exchange"


def test_rma_numbers_are_unique(engine, monkeypatch):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
        order = session.execute(select(Order)).scalar_one()
        session.add(Return(rma_number="RMA-200000", order_id=order.id, status="rejected"))
    draws = iter([100000, 100000, 100001])  # RMA-200000 is taken: the next draw is used
    monkeypatch.setattr("shop.returns.secrets.randbelow", lambda n: next(draws))
    with session_scope(engine) as session:
        started = start_return(session, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund", today=TODAY)
    assert started.rma_number == "RMA-200001"


# -- refusals ------------------------------------------------------------------------------------

def test_not_delivered_yet(engine):
    with session_scope(engine) as session:
        delivered_order(session, status="shipped", delivered_at=None)
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund",
                                                     today=TODAY), "not_delivered")
    assert refusal.message.startswith("Order SH-100001 hasn't been delivered yet (it's still on its way with UPS)")


def test_a_paid_order_is_steered_to_cancelling(engine):
    with session_scope(engine) as session:
        delivered_order(session, status="paid", delivered_at=None)
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund",
                                                     today=TODAY), "not_delivered")
    assert refusal.suggestion == "cancel_order"


def test_outside_the_window_by_n_days(engine):
    with session_scope(engine) as session:
        delivered_order(session, delivered_at=datetime(2024, 5, 1, 10))
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund",
                                                     today=TODAY), "outside_window")
    assert refusal.message == ("The 30-day return window for order SH-100001 closed on Friday, May 31, 2024, "
                               "15 days ago, so it can't be returned any more.")
    assert refusal.details["problems"][0]["days_outside_window"] == 15


def test_final_sale_items(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Glow Face Cream"]: 1}, "", "refund",
                                                     today=TODAY), "final_sale")
    assert refusal.message.startswith("Glow Face Cream (white / One Size) can't be returned: Beauty items are final sale.")
    refusal = refused(engine, lambda s: start_return(
        s, "SH-100001", {ids["Everyday Tee"]: 1, ids["Clearance Jacket"]: 1}, "", "refund", today=TODAY), "final_sale")
    assert "clearance items are final sale" in refusal.message and "Everyday Tee" not in refusal.message


def test_items_not_on_the_order_and_bad_quantities(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {987654: 1}, "", "refund", today=TODAY),
                      "item_not_on_order")
    assert refusal.message == "Item 987654 isn't on order SH-100001."
    refused(engine, lambda s: start_return(s, "SH-100001", {"tee": 1}, "", "refund", today=TODAY), "item_not_on_order")
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 2}, "", "refund",
                                                     today=TODAY), "quantity_exceeds")
    assert refusal.message == "You bought 1 x Everyday Tee (white / M), so you can return at most 1, not 2."
    refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 0}, "", "refund", today=TODAY),
            "invalid_quantity")
    refused(engine, lambda s: start_return(s, "SH-100001", {}, "", "refund", today=TODAY), "no_items")
    refusal = refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "cash",
                                                     today=TODAY), "invalid_resolution")
    assert refusal.message == "For a return you can choose a refund, an exchange, store credit."


def test_several_problems_are_listed_together(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    refusal = refused(engine, lambda s: start_return(
        s, "SH-100001", {ids["Glow Face Cream"]: 1, ids["Everyday Tee"]: 3}, "", "refund", today=TODAY),
        "several_problems")
    assert isinstance(refusal, ReturnRefusal)
    assert [p["code"] for p in refusal.details["problems"]] == ["final_sale", "quantity_exceeds"]


def test_someone_elses_order_and_a_cancelled_order(engine):
    with session_scope(engine) as session:
        delivered_order(session)
        ids = items(session)
    refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund", today=TODAY,
                                           owner_email="mallory@example.com"), "order_not_found")
    refused(engine, lambda s: start_return(s, "SH-10001", {ids["Everyday Tee"]: 1}, "", "refund", today=TODAY),
            "invalid_order_number")
    with session_scope(engine) as session:
        session.execute(select(Order)).scalar_one().status = "cancelled"
    refused(engine, lambda s: start_return(s, "SH-100001", {ids["Everyday Tee"]: 1}, "", "refund", today=TODAY),
            "order_cancelled")


# -- refunds -------------------------------------------------------------------------------------

def test_refund_status_and_refunds_for_customer(engine):
    with session_scope(engine) as session:
        delivered_order(session, email="Alex.Morgan@example.com")
        ids = items(session)
    with session_scope(engine) as session:
        start_return(session, "SH-100001", {ids["Canvas Sneakers"]: 1}, "Too small", "refund", today=TODAY,
                     now=datetime(2024, 6, 10, 9))
    with session_scope(engine) as session:
        tee = session.execute(select(Order)).scalar_one().items[1].variant
        other = make_order(session, "SH-100002", [(tee, 1)], email="alex.morgan@example.com", status="cancelled")
        session.add(Refund(order_id=other.id, amount_cents=2219, status="completed", method="original_payment",
                           created_at=datetime(2024, 6, 12, 8), completed_at=datetime(2024, 6, 14, 8)))
        stranger = make_order(session, "SH-100003", [(tee, 1)], email="sam@example.com", status="cancelled")
        session.add(Refund(order_id=stranger.id, amount_cents=999, status="pending", created_at=datetime(2024, 6, 13)))
    with session_scope(engine) as session:
        status = refund_status(session, "sh100001", owner_email="alex.morgan@example.com")
        mine = refunds_for_customer(session, "ALEX.MORGAN@example.com")
        with pytest.raises(OrderNotFound):
            refund_status(session, "SH-100003", owner_email="alex.morgan@example.com")
        none = refund_status(session, "SH-100003")
    assert [(r.amount_cents, r.status) for r in status.refunds] == [(5400, "pending")]
    assert status.refunds[0].rma_number == status.returns[0].rma_number
    assert status.refunds[0].status_text.startswith("waiting for your return to reach our warehouse")
    assert status.total_pending_cents == 5400 and status.total_refunded_cents == 0
    assert status.message.startswith("Refunds for order SH-100001: $54.00 for return RMA-")
    assert [(r.order_number, r.amount_cents, r.status) for r in mine] == [
        ("SH-100002", 2219, "completed"), ("SH-100001", 5400, "pending")]
    assert mine[0].status_text == "completed on Friday, June 14, 2024, to the original payment method"
    assert [r.amount_cents for r in none.refunds] == [999]
    assert none.refunds[0].status_text.startswith(
        "started. The refund goes back to the original payment method within 3-5 business days")
    with session_scope(engine) as session:
        assert refunds_for_customer(session, "nobody@example.com") == []
        assert refund_status(session, "SH-100002").message == (
            "Refunds for order SH-100002: $22.19 for order SH-100002: completed on Friday, June 14, 2024, "
            "to the original payment method.")
