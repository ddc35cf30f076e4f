"""From search to a paid order in real Chromium: the chat widget, the sandbox payment page, the webhook, the
confirmation pushed back into the same chat through Rasa's trigger_intent API, and the database afterwards."""
import re

from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from shop.carts import CartDiscount
from shop.db import session_scope
from shop.models import Cart, DiscountCode, Order, Variant
from tests.browser import launch_chromium

BOT_MESSAGES = "#shop-chat .rw-group-message.rw-from-response .rw-message-text"
REPLY_BUTTONS = "#shop-chat .rw-replies .rw-reply"
CODE = "SAVE20"


def _times_used(engine, code):
    with session_scope(engine) as session:
        return session.execute(select(DiscountCode.times_used).where(DiscountCode.code == code)).scalar_one()


def test_search_add_apply_a_code_check_out_pay_and_see_the_confirmation_in_the_chat(stack):
    engine = stack.engine()
    used_before = _times_used(engine, CODE)
    page_errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            chat = context.new_page()
            chat.on("pageerror", lambda error: page_errors.append(str(error)))
            chat.goto(stack.web_url)
            chat.locator("#shop-chat .rw-launcher").click(timeout=30_000)
            bot = chat.locator(BOT_MESSAGES)
            expect(bot.first).to_contain_text("welcome to", timeout=30_000)

            def say(text, expected, timeout=30_000):
                chat.locator("#shop-chat .rw-new-message").fill(text)
                chat.locator("#shop-chat .rw-new-message").press("Enter")
                expect(bot.last).to_contain_text(expected, timeout=timeout)

            say("show me red sneakers under 80 dollars", "red sneakers under $80")
            first_card = chat.locator("#shop-chat .rw-carousel-card").first
            title = first_card.locator(".rw-carousel-card-title").inner_text().strip()
            first_card.locator(".rw-reply", has_text="Add to cart").click()

            # Missing size or colour: answer with the first in-stock option offered, until it is added.
            added = chat.locator(BOT_MESSAGES, has_text="to your cart")
            for _ in range(3):
                expect(bot.last).to_contain_text(re.compile(r"to your cart|Which (size|colour)"), timeout=30_000)
                if added.count():
                    break
                # Wait for the answer to this click before looking again: clicking twice on the same
                # question's buttons would pick a button of the next message (e.g. "Check out").
                messages_before = bot.count()
                chat.locator(REPLY_BUTTONS).first.click()
                expect(bot).not_to_have_count(messages_before, timeout=30_000)
            expect(added.first).to_contain_text(f"Added 1 x {title}", timeout=30_000)

            say(f"apply {CODE}", f"{CODE} applied")
            say("checkout", "What name should go on the shipping label?")
            say("Sam Rivera", "Which email address")
            say("sam.rivera.e2e@example.com", "What's the shipping address?")
            say("742 Maple Street, Portland, 97205, US", "Which shipping would you like")
            say("standard", "Shall I place the order for")
            say("yes", "is placed and waiting for payment")
            placed = chat.locator(BOT_MESSAGES, has_text="is placed and waiting for payment").last.inner_text()
            number = re.search(r"Order (SH-\d+)", placed).group(1)
            pay_url = chat.locator("#shop-chat a.rw-reply", has_text="Pay now").last.get_attribute("href")
            assert pay_url.startswith(f"{stack.web_url}/pay/ps_test_")

            payment = context.new_page()
            payment.goto(pay_url)
            payment.fill("#card_number", "4000 0000 0000 0002")
            payment.fill("#expiry", "12/34")
            payment.fill("#cvc", "123")
            payment.click("#pay-button")
            expect(payment.locator("body")).to_contain_text("declined", timeout=30_000)
            with session_scope(engine) as session:
                order = session.execute(select(Order).where(Order.number == number)).scalar_one()
                assert order.status == "pending_payment"
                cart = session.execute(select(Cart).where(Cart.session_id == order.conversation_id)).scalar_one()
                assert cart.status == "open" and len(cart.items) == 1  # the cart is kept after a decline
                variant_id = order.items[0].variant_id
                stock_before = session.get(Variant, variant_id).stock

            payment.fill("#card_number", "4242 4242 4242 4242")
            payment.fill("#expiry", "12/34")
            payment.fill("#cvc", "123")
            payment.click("#pay-button")
            expect(payment.locator("body")).to_contain_text(f"order {number} is paid", timeout=30_000)

            confirmation = chat.locator(BOT_MESSAGES, has_text=f"your order {number} is confirmed")
            expect(confirmation).to_have_count(1, timeout=30_000)
            confirmed = confirmation.inner_text()
            chat.screenshot(path=str(stack.workdir / "checkout.png"))
        finally:
            browser.close()
    assert page_errors == []

    with session_scope(engine) as session:
        order = session.execute(select(Order).where(Order.number == number)).scalar_one()
        assert order.status == "paid"
        assert order.email == "sam.rivera.e2e@example.com"
        assert f"Total paid: ${order.total_cents / 100:,.2f}" in confirmed
        code = session.execute(select(DiscountCode).where(DiscountCode.code == CODE)).scalar_one()
        assert order.discount_code_id == code.id and order.discount_cents > 0
        assert code.times_used == used_before + 1
        assert session.get(Variant, variant_id).stock == stock_before - 1
        cart = session.execute(select(Cart).where(Cart.session_id == order.conversation_id)
                               .order_by(Cart.id)).scalars().first()
        assert cart.status == "checked_out"
        assert session.get(CartDiscount, cart.id) is not None

