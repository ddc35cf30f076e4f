"""The shop front over real HTTP: the server runs as `python -m web` on a free port against a
temporary SQLite shop (see conftest.py). One test drives headless Chromium through Playwright."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import List
from urllib.parse import urlsplit

import pytest
from markupsafe import escape
import requests

from tests.browser import launch_chromium
from tests.web.conftest import BASIC_TEE_COUNT, EVIL_DESCRIPTION, EVIL_TITLE, SHOP_NAME

SCREENSHOT = Path("/tmp/web-home.png")


def get(base_url: str, path: str, **kwargs) -> requests.Response:
    return requests.get(base_url + path, timeout=10, **kwargs)


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def variant_rows(page: str) -> List[List[str]]:
    body = re.search(r'<table class="variants">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [
        [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def chat_config(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="chat-config">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def card_handles(page: str) -> List[str]:
    return re.findall(r'<article class="card" data-handle="([^"]+)"', page)


# ----------------------------------------------------------------------------- pages over HTTP


def test_healthz(web_server):
    response = get(web_server, "/healthz")
    assert response.status_code == 200
    assert response.text == "ok"


def test_home_lists_featured_products_from_the_database(web_server):
    response = get(web_server, "/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert f"<title>{SHOP_NAME}</title>" in page
    # Most-reviewed first, unpublished products never shown.
    handles = card_handles(page)
    assert handles[:2] == ["trailblazer-rain-jacket", "alpine-hiking-boot"]
    assert len(handles) == 12
    assert "secret-prototype" not in page and "Secret Prototype" not in page
    # The jacket's card: link, image, brand, price, compare-at price struck through, rating.
    card = re.search(r'<article class="card" data-handle="trailblazer-rain-jacket">(.*?)</article>', page, re.S).group(1)
    assert 'href="/products/trailblazer-rain-jacket"' in card
    assert 'src="/images/products/trailblazer-rain-jacket.svg"' in card
    assert "Summit Co" in card
    assert '<span class="price price-sale">$89.00</span>' in card
    assert re.search(r"<s [^>]*>\$120\.00</s>", card)
    assert "Rated 4.3 out of 5" in card and "(3)" in card
    # A product without an image gets the local placeholder.
    assert 'src="/images/products/alpine-hiking-boot.svg"' in page
    # Category navigation from the database.
    for name in ("Footwear", "Jackets", "Tops"):
        assert f'<a href="/search?category={name}"' in page


def test_product_page_shows_variants_prices_stock_and_reviews(web_server):
    response = get(web_server, "/products/trailblazer-rain-jacket")
    assert response.status_code == 200
    page = response.text
    assert '<h1 class="product-title">Trailblazer Rain Jacket</h1>' in page
    assert '<p class="product-brand">Summit Co</p>' in page
    assert "A light waterproof shell." in page and "Packs into its own pocket." in page
    assert variant_rows(page) == [
        ["Blue", "M", "$89.00 $120.00", "In stock"],
        ["Blue", "L", "$89.00 $120.00", "Out of stock"],
        ["Red", "M", "$95.00", "In stock only 2 left"],
    ]
    # From-price and compare-at of the cheapest option.
    price = text_of(re.search(r'<p class="product-price">(.*?)</p>', page, re.S).group(1))
    assert price == "From $89.00 $120.00"
    # Average of 5, 4, 4 and the latest review first.
    assert '<strong class="review-average">4.3</strong>' in page
    titles = re.findall(r'<strong class="review-title">(.*?)</strong>', page)
    assert titles == ["Latest thoughts", "Good fit", "Kept me dry"]
    assert "Cleo" in page

    boot = get(web_server, "/products/alpine-hiking-boot").text
    assert variant_rows(boot) == [
        ["Brown", "42", "$149.99", "In stock only 3 left"],
        ["Brown", "43", "$149.99", "Out of stock"],
    ]


def test_unknown_product_is_a_helpful_404(web_server):
    response = get(web_server, "/products/no-such-product")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "couldn&#39;t find that product" in response.text
    assert 'action="/search"' in response.text  # a way forward
    # Unpublished products are not for sale.
    assert get(web_server, "/products/secret-prototype").status_code == 404
    # Unknown pages get the same friendly page.
    assert get(web_server, "/no/such/page").status_code == 404


@pytest.mark.parametrize(
    "handle",
    [
        "a" * 10_240,
        "x' OR '1'='1",
        "'; DROP TABLE products; --",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AE%F0%9F%98%80",
        "<script>alert(1)</script>",
    ],
    ids=["10kB", "sql-or", "sql-drop", "nul", "traversal", "unicode", "script"],
)
def test_absurd_product_handles_are_404_not_errors(web_server, handle):
    response = get(web_server, "/products/" + handle)
    assert response.status_code == 404
    assert "<script>alert(1)</script>" not in response.text
    # The shop is unharmed.
    assert get(web_server, "/products/trailblazer-rain-jacket").status_code == 200


def test_html_in_product_text_is_shown_as_text(web_server):
    page = get(web_server, "/products/evil-sneaker").text
    assert EVIL_TITLE not in page
    assert "<script>alert(" not in page
    assert str(escape(EVIL_TITLE)) in page
    assert '<img src=x onerror="alert(1)">' not in page
    assert str(escape(EVIL_DESCRIPTION)) in page
    # A javascript: image URL is never used; the placeholder stands in.
    assert "javascript:" not in page
    assert 'src="/images/products/evil-sneaker.svg"' in page
    # Also escaped on the product card.
    home = get(web_server, "/").text
    assert EVIL_TITLE not in home and str(escape(EVIL_TITLE)) in home
    # And in the placeholder image.
    svg = get(web_server, "/images/products/evil-sneaker.svg").text
    assert "<script" not in svg and "&lt;script&gt;" in svg


def test_widget_bundle_is_served_locally_and_configured(web_server, rasa_socket_url, webchat_installed):
    bundle = get(web_server, "/static/webchat.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["Content-Type"]
    assert "e.WebChat=t()" in bundle.text  # the UMD build that defines window.WebChat
    assert len(bundle.text) > 100_000
    assert "fonts.googleapis.com" not in bundle.text  # no third-party requests from the widget
    cached = get(web_server, "/static/webchat.js", headers={"If-None-Match": bundle.headers["ETag"]})
    assert cached.status_code == 304

    page = get(web_server, "/").text
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
    assert "/static/webchat.js" in scripts
    assert all(urlsplit(src).netloc == "" for src in scripts), scripts  # nothing from a CDN
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert chat_config(page) == {
        "socketUrl": rasa_socket_url,
        "socketPath": "/socket.io/",
        "title": SHOP_NAME,
        "subtitle": "Shopping assistant",
        "initPayload": '/page_context{"page_type":"home"}',
        "customData": {"page": "home", "product_handle": None, "language": "en"},
        "params": {"storage": "session"},
        "embedded": False,
        "hideWhenNotConnected": False,
        "connectingText": "Connecting to the shop assistant...",
        "inputTextFieldHint": "Ask about products, orders, returns...",
        "showFullScreenButton": False,
    }
    product = chat_config(get(web_server, "/products/alpine-hiking-boot").text)
    assert product["customData"] == {"page": "product", "product_handle": "alpine-hiking-boot", "language": "en"}
    assert product["initPayload"] == '/page_context{"page_type":"product","product_handle":"alpine-hiking-boot"}'
    search = chat_config(get(web_server, "/search?q=boot").text)
    assert search["customData"] == {"page": "search", "product_handle": None, "language": "en"}
    # The page allows the browser to reach the Rasa socket and nothing else outside.
    csp = get(web_server, "/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert rasa_socket_url in csp and rasa_socket_url.replace("http://", "ws://") in csp


def test_search_finds_products(web_server):
    page = get(web_server, "/search", params={"q": "rain jacket"}).text
    assert card_handles(page) == ["trailblazer-rain-jacket"]
    assert "1–1 of 1 product" in page
    assert 'value="rain jacket"' in page  # the query stays in the search box

    # Category filter, cheapest first, paged 24 at a time.
    first = get(web_server, "/search", params={"category": "Tops"}).text
    assert len(card_handles(first)) == 24
    assert card_handles(first)[0] == "basic-tee-01"
    assert f"1–24 of {BASIC_TEE_COUNT} products" in first
    assert 'href="/search?category=Tops&amp;page=2"' in first
    second = get(web_server, "/search", params={"category": "Tops", "page": "2"}).text
    assert card_handles(second) == [f"basic-tee-{n:02d}" for n in range(25, BASIC_TEE_COUNT + 1)]
    assert 'href="/search?category=Tops"' in second  # back to page 1

    nothing = get(web_server, "/search", params={"q": "zzzqqq"})
    assert nothing.status_code == 200
    assert "No products found" in nothing.text
    # Bad paging input and odd text are handled, not errors.
    for params in ({"page": "-3"}, {"page": "abc"}, {"page": "99999"}, {"q": "\x00' OR 1=1 --"}, {"q": "x" * 5000}):
        assert get(web_server, "/search", params=params).status_code == 200, params
    escaped = get(web_server, "/search", params={"q": "<b>bold</b>"}).text
    assert "<b>bold</b>" not in escaped and "&lt;b&gt;bold&lt;/b&gt;" in escaped


def test_placeholder_images_are_deterministic_svg(web_server):
    first = get(web_server, "/images/products/trailblazer-rain-jacket.svg")
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("image/svg+xml")
    assert first.text.startswith("<svg") and ">TR<" in first.text
    assert get(web_server, "/images/products/trailblazer-rain-jacket.svg").text == first.text
    other = get(web_server, "/images/products/alpine-hiking-boot.svg").text
    colours = lambda svg: re.findall(r"hsl\([^)]*\)", svg)  # noqa: E731
    assert colours(other) != colours(first.text)
    # Handles not in the catalog still get a picture (from the handle's words).
    assert ">WT<" in get(web_server, "/images/products/woolly-thing.svg").text


# ----------------------------------------------------------------------------- in a real browser


def _watch(page, page_errors: List[str], csp_violations: List[str]) -> None:
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on(
        "console",
        lambda msg: csp_violations.append(msg.text)
        if msg.type == "error" and "Content Security Policy" in msg.text
        else None,
    )


def test_shop_in_headless_chromium(web_server):
    """No Rasa listening: the shop works, the widget mounts (launcher in the DOM, kept hidden by
    rasa-webchat until a session is confirmed), and no script fails."""
    from playwright.sync_api import expect, sync_playwright

    page_errors: List[str] = []
    csp_violations: List[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _watch(page, page_errors, csp_violations)
            page.goto(web_server + "/")
            expect(page.locator(".brand-name")).to_have_text(SHOP_NAME)
            expect(page.locator("article.card")).to_have_count(12)
            launcher = page.locator("#shop-chat .rw-launcher")
            expect(launcher).to_be_attached(timeout=15_000)
            # Offline, chat buttons stay out of the way.
            expect(page.locator("html")).not_to_have_class(re.compile(r"\bchat-ready\b"))
            expect(page.locator(".hero [data-open-chat]")).to_be_hidden()
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.locator('article.card[data-handle="trailblazer-rain-jacket"] a').click()
            page.wait_for_url("**/products/trailblazer-rain-jacket")
            expect(page.locator("h1.product-title")).to_have_text("Trailblazer Rain Jacket")
            expect(page.locator(".product-price .price")).to_have_text("$89.00")
            expect(page.locator("table.variants tbody tr")).to_have_count(3)
            expect(page.locator("#shop-chat .rw-launcher")).to_be_attached(timeout=15_000)
        finally:
            browser.close()
    assert page_errors == []
    assert csp_violations == []
    assert SCREENSHOT.stat().st_size > 10_000


def test_chat_widget_talks_socketio_with_page_context(web_server, rasa_socket_stand_in):
    """With something speaking Rasa's socket.io protocol on RASA_SOCKET_URL, the launcher shows,
    the page context opens the conversation, messages carry the page context as customData, and the
    session survives moving to another page (session storage)."""
    from playwright.sync_api import expect, sync_playwright

    page_errors: List[str] = []
    csp_violations: List[str] = []
    bot_text = "#shop-chat .rw-group-message.rw-from-response .rw-message-text"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _watch(page, page_errors, csp_violations)
            page.goto(web_server + "/")
            launcher = page.locator("#shop-chat .rw-launcher")
            expect(launcher).to_be_visible(timeout=15_000)
            expect(page.locator("html")).to_have_class(re.compile(r"\bchat-ready\b"))
            launcher.click()
            expect(page.locator(bot_text).first).to_have_text("Hi! I'm the shop assistant.", timeout=10_000)
            greet = rasa_socket_stand_in.received[0]
            assert greet["message"] == '/page_context{"page_type":"home"}'
            assert greet["customData"] == {"page": "home", "product_handle": None, "language": "en"}
            session_id = greet["session_id"]
            assert session_id

            page.locator('article.card[data-handle="trailblazer-rain-jacket"] a').click()
            page.wait_for_url("**/products/trailblazer-rain-jacket")
            expect(page.locator("#shop-chat .rw-launcher")).to_be_visible(timeout=15_000)
            ask = page.get_by_role("button", name="Ask about this product")
            expect(ask).to_be_visible()
            ask.click()
            expect(page.locator("#shop-chat .rw-conversation-container .rw-title")).to_have_text(SHOP_NAME)
            # The earlier conversation is still there (params.storage = "session").
            expect(page.locator(bot_text).first).to_have_text("Hi! I'm the shop assistant.")
            box = page.locator("#shop-chat .rw-new-message")
            expect(box).to_be_visible()
            box.fill("Do you have it in red?")
            box.press("Enter")
            expect(page.locator("#shop-chat .rw-client .rw-message-text").last).to_have_text("Do you have it in red?")
            expect(page.locator(bot_text).last).to_have_text("You said: Do you have it in red?", timeout=10_000)
            page.screenshot(path="/tmp/web-product-chat.png")
        finally:
            browser.close()
    question = rasa_socket_stand_in.received[-1]
    assert question["message"] == "Do you have it in red?"
    assert question["customData"] == {"page": "product", "product_handle": "trailblazer-rain-jacket", "language": "en"}
    assert question["session_id"] == session_id
    # Opening the chat on the product page told the conversation about that product, once.
    assert [m["message"] for m in rasa_socket_stand_in.received] == [
        '/page_context{"page_type":"home"}',
        '/page_context{"page_type":"product","product_handle":"trailblazer-rain-jacket"}',
        "Do you have it in red?",
    ]
    assert page_errors == []
    assert csp_violations == []


# ----------------------------------------------------------------------------- settings


def test_settings_defaults_and_bad_values():
    from web.settings import SettingsError, load_settings

    settings = load_settings({})
    assert (settings.host, settings.port, settings.shop_name) == ("127.0.0.1", 8000, "Northwind Outfitters")
    assert (settings.rasa_socket_url, settings.rasa_socket_path) == ("http://localhost:5005", "/socket.io/")
    assert settings.currency_symbol == "$"
    custom = load_settings({"WEB_PORT": "9001", "RASA_SOCKET_URL": "https://chat.example.com/", "SHOP_CURRENCY_SYMBOL": "€"})
    assert custom.port == 9001 and custom.rasa_socket_url == "https://chat.example.com"
    assert custom.rasa_origins == ("https://chat.example.com", "wss://chat.example.com")
    for env in ({"WEB_PORT": "eighty"}, {"WEB_PORT": "70000"}, {"RASA_SOCKET_URL": "localhost:5005"}):
        with pytest.raises(SettingsError):
            load_settings(env)
