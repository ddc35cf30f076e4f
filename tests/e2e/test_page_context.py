"""Proactive help from the page in a live chat: the shop's product pages open the widget (real Chromium) with
that product's sizes in stock and delivery estimate; a cart page (as a store that embeds the widget there
opens it, over socket.io) gets an offer to finish the order with the chat's real cart."""
import re
from collections import defaultdict
from datetime import date, datetime

from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from shop.carts import cart_view
from shop.db import session_scope
from shop.models import Product, Variant
from shop.policy import format_money
from tests.browser import launch_chromium
from tests.e2e.chat import ask, buttons
from tests.e2e.test_browser import BOT_MESSAGES
from tests.e2e.test_socketio import WebChatClient
from web.server import page_context_payload

REPLY_BUTTONS = "#shop-chat .rw-replies .rw-reply"
DELIVERY = re.compile(r"arrives (\w{3} \d{2} \w{3}) - (\w{3} \d{2} \w{3}) with standard shipping, "
                      r"or (\w{3} \d{2} \w{3}) - (\w{3} \d{2} \w{3}) with express")


def products_with_some_sizes_sold_out(engine, count: int):
    """(handle, title, {colour: [sizes in stock]}) of published products with stock that miss some sizes."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(Product.id, Product.handle, Product.title, Variant.color, Variant.size, Variant.stock)
            .join(Variant, Variant.product_id == Product.id)
            .where(Product.published.is_(True), Variant.color != "", Variant.size != "")
            .order_by(Product.id, Variant.id)
        ).all()
    products = defaultdict(lambda: {"handle": "", "title": "", "in_stock": defaultdict(list), "sold_out": 0})
    for product_id, handle, title, color, size, stock in rows:
        product = products[product_id]
        product.update(handle=handle, title=title)
        if stock > 0:
            product["in_stock"][color].append(size)
        else:
            product["sold_out"] += 1
    chosen = [p for p in products.values() if p["sold_out"] and p["in_stock"]][:count]
    assert len(chosen) == count, "the seeded catalog has too few products with a sold-out size"
    return chosen


def in_stock_line(text: str):
    """{colour: {sizes}} from the greeting's "In stock: navy (S, L); black (M)." sentence."""
    line = re.search(r"In stock: (.+?\))\.", text).group(1)
    found = {}
    for part in line.split("; "):
        color, sizes = re.fullmatch(r"(.+) \((.+)\)", part).groups()
        found[color] = set(sizes.split(", "))
    return found


def assert_delivery_estimate(text: str) -> None:
    today = date.today()
    days = [datetime.strptime(f"{day} {today.year}", "%a %d %b %Y").date()
            for day in DELIVERY.search(text).groups()]
    # A date shown without its year that lies before today is next January's.
    days = [day if day >= today else day.replace(year=today.year + 1) for day in days]
    standard_first, standard_last, express_first, express_last = days
    assert today < standard_first <= standard_last and today < express_first <= express_last
    assert express_last <= standard_last


def test_the_product_page_opens_the_chat_about_that_product_and_the_next_page_about_the_next(stack):
    first, second = products_with_some_sizes_sold_out(stack.engine(), 2)
    page_errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{stack.web_url}/products/{first['handle']}")
            page.locator("#shop-chat .rw-launcher").click(timeout=30_000)
            greeting = page.locator(BOT_MESSAGES).first
            expect(greeting).to_contain_text(f"Looking at the {first['title']}?", timeout=60_000)
            text = greeting.inner_text()
            assert in_stock_line(text) == {color: set(sizes) for color, sizes in first["in_stock"].items()}
            assert_delivery_estimate(text)
            expect(page.locator(REPLY_BUTTONS, has_text="Add to cart")).to_be_visible()
            expect(page.locator(REPLY_BUTTONS, has_text="Delivery options")).to_be_visible()

            # The chat stays open on the next product page and speaks about that product, once.
            page.goto(f"{stack.web_url}/products/{second['handle']}")
            about_second = page.locator(BOT_MESSAGES, has_text=f"Looking at the {second['title']}?")
            expect(about_second).to_have_count(1, timeout=60_000)
            assert in_stock_line(about_second.inner_text()) == {
                color: set(sizes) for color, sizes in second["in_stock"].items()}
            page.screenshot(path=str(stack.workdir / "product-page-chat.png"))
        finally:
            browser.close()
    assert page_errors == []


def test_the_cart_page_offers_to_finish_the_order_with_the_chats_own_cart(stack):
    [product] = products_with_some_sizes_sold_out(stack.engine(), 1)
    color, sizes = next(iter(product["in_stock"].items()))
    chat = WebChatClient(stack.rasa_url, "e2e-page-context-cart")
    empty = WebChatClient(stack.rasa_url, "e2e-page-context-empty-cart")
    try:
        ask(chat, f'/add_to_cart{{"product_handle": "{product["handle"]}", "color": "{color}", "size": "{sizes[0]}"}}',
            "to your cart")
        with session_scope(stack.engine()) as session:
            total = cart_view(session, "e2e-page-context-cart").total_cents
        help_offer = ask(chat, page_context_payload("cart", None), "Shall I help you check out?")
        assert f"You have 1 item in your cart, {format_money(total)} in total." in help_offer["text"]
        assert list(buttons(help_offer)) == ["Check out", "Show my cart", "Talk to a person"]
        ask(chat, buttons(help_offer)["Show my cart"], product["title"])

        nothing_yet = ask(empty, page_context_payload("checkout", None), "Need a hand finishing your order?")
        assert list(buttons(nothing_yet)) == ["Delivery options", "Payment methods", "Talk to a person"]
    finally:
        chat.close()
        empty.close()
    with session_scope(stack.engine()) as session:
        assert cart_view(session, "e2e-page-context-empty-cart").is_empty  # the offer changed nothing
