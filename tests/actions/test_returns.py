"""Returns and refunds in the chat: eligibility per item, RMA + label link, clear refusals, refund status."""
from shop.db import session_scope
from shop.models import Order, Return
from tests.actions.test_orders import OWNER, Chat, order_data, shop, verified_chat  # noqa: F401 - fixture


def returns_of(engine, number):
    with session_scope(engine) as session:
        order = session.query(Order).filter_by(number=number).one()
        return [(r.rma_number, r.resolution, r.reason, sorted((i.order_item.product_title, i.quantity)
                                                              for i in r.items)) for r in order.returns]


def start(number="SH-100004"):
    chat = Chat()
    chat.say("i want to return something", "start_return")
    reply = chat.say(f"{number} {OWNER}")
    return chat, reply


def test_a_return_lists_eligibility_per_item_and_ends_with_an_rma_and_label(shop):
    chat, reply = start()

    assert "Everyday Tee (white / M): can be returned (up to 2)" in reply
    assert "Glow Face Cream (white / One Size): can't be returned" in reply and "final sale" in reply
    assert "Clearance Jacket (navy / L): can't be returned" in reply
    assert chat.asking == "order_return_items"
    assert "reason" in chat.say("the tee")
    offer = chat.say("too small", return_reason="too small")
    assert "refund, an exchange or store credit" in offer
    done = chat.say("exchange", resolution="exchange")

    [(rma, resolution, reason, items)] = returns_of(shop, "SH-100004")
    assert rma in done and f"http://shop.test/returns/{rma}/label" in done
    assert (resolution, reason, items) == ("exchange", "too small", [("Everyday Tee", 2)])


def test_a_final_sale_item_is_refused_with_its_reason_and_nothing_changes(shop):
    chat, _ = start()
    before = order_data(shop)
    reply = chat.say("the face cream")

    assert "Glow Face Cream (white / One Size) can't be returned" in reply and "final sale" in reply
    assert chat.asking == "order_return_items"
    assert order_data(shop) == before


def test_an_item_not_on_the_order_is_refused(shop):
    chat, _ = start()
    before = order_data(shop)
    reply = chat.say("the canvas sneakers")

    assert "can't find that on order SH-100004" in reply
    assert order_data(shop) == before


def test_an_order_already_returned_is_refused_clearly(shop):
    chat, _ = start()
    chat.say("all of them")
    chat.say("changed my mind")
    chat.say("refund", resolution="refund")
    assert len(returns_of(shop, "SH-100004")) == 1
    before = order_data(shop)

    reply = chat.say("return SH-100004", "start_return", order_number="SH-100004")

    assert "Nothing on order SH-100004 can be returned" in reply and "already" in reply
    assert chat.form is None and order_data(shop) == before


def test_a_return_outside_the_window_is_refused(shop):
    chat, reply = start("SH-100005")

    assert "The 30-day return window for order SH-100005 closed on" in reply
    assert chat.form is None


def test_the_delivery_time_asked_during_a_return_then_the_return_goes_on(shop):
    chat, _ = start()
    reply = chat.say("how long does delivery take", "delivery_time")

    assert "business days" in reply and "Which items would you like to return?" in reply
    assert chat.asking == "order_return_items"


def test_refund_status_after_a_cancellation(shop):
    chat, _ = verified_chat("cancel_order", text="cancel SH-100001")
    chat.say("yes", "affirm")
    reply = chat.say("where is my refund", "request_refund")

    with session_scope(shop) as session:
        total = session.query(Order).filter_by(number="SH-100001").one().total_cents
    assert f"Refunds for order SH-100001: ${total / 100:.2f} for order SH-100001: started." in reply


def test_refunds_of_all_orders_need_verification_first(shop):
    chat = Chat()
    reply = chat.say("any news on my refunds", "request_refund")

    assert "order number" in reply and chat.asking == "order_number"
    assert "$" not in reply


def test_a_return_started_rma_is_unique_per_return(shop):
    chat, _ = start()
    chat.say("the tee")
    chat.say("too big")
    chat.say("store credit", resolution="store_credit")
    with session_scope(shop) as session:
        assert session.query(Return).count() == 1
