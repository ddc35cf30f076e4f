"""Abandoned-cart recovery end to end: a socket.io shopper leaves a cart, the shop worker (a real process,
restarted in between) pushes the reminder into the same chat through Rasa's trigger_intent API, the shopper
checks out with the reminder's single-use code and pays, and `python -m shop report` counts the cart."""
import re
from datetime import datetime, timezone

import requests
from sqlalchemy import select

from shop.db import session_scope
from shop.models import Cart, DiscountCode, Order, Product, Variant
from shop.reminders import CartReminder
from tests.e2e.chat import reply_text, start_worker
from tests.e2e.test_socketio import WebChatClient

SENDER = "e2e-cart-recovery"


def in_stock_variant(engine):
    with session_scope(engine) as session:
        product, variant = session.execute(
            select(Product, Variant).join(Variant, Variant.product_id == Product.id)
            .where(Variant.stock > 2, Product.published.is_(True), Variant.color != "", Variant.size != "")
            .order_by(Variant.id)
        ).first()
        return product.handle, product.title, variant.color, variant.size


def reminder_state(engine):
    with session_scope(engine) as session:
        return session.execute(select(CartReminder.status, CartReminder.due_at)
                               .join(Cart, Cart.id == CartReminder.cart_id)
                               .where(Cart.session_id == SENDER)).first()


def test_a_left_cart_gets_a_reminder_after_a_worker_restart_and_its_code_recovers_the_sale(stack):
    engine = stack.engine()
    handle, title, color, size = in_stock_variant(engine)
    chat = WebChatClient(stack.rasa_url, SENDER)
    first_worker = start_worker(stack, "worker-1.log")
    try:
        chat.say(f'/add_to_cart{{"product_handle": "{handle}", "color": "{color}", "size": "{size}"}}')
        assert f"Added 1 x {title}" in reply_text(chat, "to your cart")
        status, due_at = reminder_state(engine)
        assert status == "scheduled"

        # The worker that was running when the shopper left stops before the reminder is due; a new one
        # (a fresh process that knows nothing but the database) must still deliver it.
        first_worker.stop()
        assert reminder_state(engine).status == "scheduled"
        second_worker = start_worker(stack, "worker-2.log")
        try:
            reminder = reply_text(chat, "You left these in your cart")
        finally:
            second_worker.stop()
        assert datetime.now(timezone.utc).replace(tzinfo=None) >= due_at
        assert title in reminder
        code = re.search(r'say "apply ([A-Z0-9-]+)"', reminder).group(1)
        assert reminder_state(engine).status == "sent"

        chat.say(f"apply {code}")
        assert f"{code} applied" in reply_text(chat, code)
        chat.say("checkout")
        reply_text(chat, "What name should go on the shipping label?")
        for answer, next_question in [("Robin Lee", "Which email address"),
                                      ("robin.lee.e2e@example.com", "What's the shipping address?"),
                                      ("12 Harbour Road, Portland, 97205, US", "Which shipping would you like"),
                                      ("standard", "Shall I place the order for")]:
            chat.say(answer)
            reply_text(chat, next_question)
        chat.say("yes")
        placed = chat.next_reply()
        while "is placed and waiting for payment" not in (placed.get("text") or ""):
            placed = chat.next_reply()
        number = re.search(r"Order (SH-\d+)", placed["text"]).group(1)
        pay_url = next(reply["url"] for reply in placed.get("quick_replies", []) if reply.get("title") == "Pay now")

        paid = requests.post(pay_url, data={"card_number": "4242 4242 4242 4242", "expiry": "12/34", "cvc": "123"},
                             timeout=60)
        assert paid.ok and f"order {number} is paid" in paid.text
        assert f"your order {number} is confirmed" in reply_text(chat, "is confirmed")
    finally:
        chat.close()
        first_worker.stop()

    with session_scope(engine) as session:
        order = session.execute(select(Order).where(Order.number == number)).scalar_one()
        used = session.execute(select(DiscountCode).where(DiscountCode.code == code)).scalar_one()
        assert order.status == "paid" and order.discount_code_id == used.id and order.discount_cents > 0
        assert used.times_used == 1
        total_paid = order.total_cents

    result = stack.shop("report", "--days", "1", "--format", "csv")
    rows = list(line.split(",") for line in result.strip().splitlines())
    header, today = rows[0], rows[1]
    assert int(today[header.index("carts_recovered")]) == 1
    assert round(float(today[header.index("revenue_recovered")]) * 100) == total_paid
    assert int(today[header.index("reminders_sent")]) >= 1
