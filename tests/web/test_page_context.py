"""The page context the chat widget opens the conversation with (web/server.py, web/static/shop.js): over
HTTP, and in headless Chromium against the socket.io stand-in (conftest.py), so no trained model is needed.
What the assistant answers to it is tested in tests/actions/test_page_context.py."""
from __future__ import annotations

import json
import re
from typing import List

import requests

from tests.browser import launch_chromium

BOOT = '/page_context{"page_type":"product","product_handle":"alpine-hiking-boot"}'
JACKET = '/page_context{"page_type":"product","product_handle":"trailblazer-rain-jacket"}'
HOME = '/page_context{"page_type":"home"}'


def chat_config(base_url: str, path: str) -> dict:
    page = requests.get(base_url + path, timeout=10).text
    raw = re.search(r'<script type="application/json" id="chat-config">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_each_page_opens_the_chat_with_its_own_context(web_server):
    boot = chat_config(web_server, "/products/alpine-hiking-boot")
    assert boot["initPayload"] == BOOT
    assert boot["customData"]["product_handle"] == "alpine-hiking-boot"
    assert chat_config(web_server, "/products/trailblazer-rain-jacket")["initPayload"] == JACKET
    assert chat_config(web_server, "/")["initPayload"] == HOME
    assert chat_config(web_server, "/search?q=boot")["initPayload"] == '/page_context{"page_type":"search"}'
    # An unknown product is a 404 page: no product to talk about.
    assert chat_config(web_server, "/products/no-such-thing")["initPayload"] == '/page_context{"page_type":"not_found"}'


def test_opening_the_chat_on_another_product_page_tells_the_conversation_about_that_product(
        web_server, rasa_socket_stand_in):
    from playwright.sync_api import expect, sync_playwright

    page_errors: List[str] = []
    bot_text = "#shop-chat .rw-group-message.rw-from-response .rw-message-text"

    def sent() -> List[str]:
        return [m["message"] for m in rasa_socket_stand_in.received]

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: page_errors.append(str(error)))

            # The conversation starts on a product page: the widget's initPayload names that product.
            page.goto(web_server + "/products/trailblazer-rain-jacket")
            launcher = page.locator("#shop-chat .rw-launcher")
            expect(launcher).to_be_visible(timeout=15_000)
            launcher.click()
            expect(page.locator(bot_text).first).to_have_text("Hi! I'm the shop assistant.", timeout=10_000)
            assert sent() == [JACKET]
            assert rasa_socket_stand_in.received[0]["customData"]["product_handle"] == "trailblazer-rain-jacket"
            session_id = rasa_socket_stand_in.received[0]["session_id"]

            # Another product, same conversation: opening the chat there sends that product's context.
            page.goto(web_server + "/products/alpine-hiking-boot")
            page.get_by_role("button", name="Ask about this product").click()
            expect(page.locator(bot_text)).to_have_count(2, timeout=10_000)
            assert sent() == [JACKET, BOOT]
            assert rasa_socket_stand_in.received[1]["session_id"] == session_id
            # The context is not shown as something the shopper typed.
            expect(page.locator("#shop-chat .rw-client .rw-message-text")).to_have_count(0)

            # Reopening on the same page, or on a page with nothing specific to say, sends nothing new.
            page.reload()
            page.get_by_role("button", name="Ask about this product").click()
            page.goto(web_server + "/")
            expect(page.locator("html")).to_have_class(re.compile(r"\bchat-ready\b"), timeout=15_000)
            page.get_by_role("button", name="Chat with us").click()  # the chat is still open: focuses it
            box = page.locator("#shop-chat .rw-new-message")
            box.fill("hello")
            box.press("Enter")
            expect(page.locator(bot_text).last).to_have_text("You said: hello", timeout=10_000)
        finally:
            browser.close()
    assert sent() == [JACKET, BOOT, "hello"]
    assert page_errors == []
