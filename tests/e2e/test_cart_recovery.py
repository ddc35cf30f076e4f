"""Abandoned-cart recovery end to end: a socket.io shopper leaves a cart, the shop worker (a real process,
restarted in between) pushes the reminder into the same chat through Rasa's trigger_intent API, the shopper
checks out with the reminder's single-use code and pays, and `python -m shop report` counts the cart."""
import re
from datetime import datetime, timezone

from sqlalchemy import select

from shop.db import session_scope
from shop.models import Cart, DiscountCode, Order, Product, Variant
from shop.reminders import CartReminder
from tests.e2e.chat import check_out_and_pay, reply_text, start_worker
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


def report_today(stack) -> dict:
    """Today's row of `python -m shop report`, by column."""
    header, today = (line.split(",") for line in stack.shop("report", "--days", "1", "--format", "csv")
                     .strip().splitlines()[:2])
    return dict(zip(header, today))


def test_a_left_cart_gets_a_reminder_after_a_worker_restart_and_its_code_recovers_the_sale(stack):
    engine = stack.engine()
    before = report_today(stack)
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
        number = check_out_and_pay(chat, "Robin Lee", "robin.lee.e2e@example.com")
    finally:
        chat.close()
        first_worker.stop()

    with session_scope(engine) as session:
        order = session.execute(select(Order).where(Order.number == number)).scalar_one()
        used = session.execute(select(DiscountCode).where(DiscountCode.code == code)).scalar_one()
        assert order.status == "paid" and order.discount_code_id == used.id and order.discount_cents > 0
        assert used.times_used == 1
        total_paid = order.total_cents

    today = report_today(stack)
    # other tests share the stack (tests/e2e/test_analytics.py recovers a cart too): this one adds one
    assert int(today["carts_recovered"]) == int(before["carts_recovered"]) + 1
    assert round((float(today["revenue_recovered"]) - float(before["revenue_recovered"])) * 100) == total_paid
    assert int(today["reminders_sent"]) >= int(before["reminders_sent"]) + 1
