"""The sandbox payment page and the webhook receiver on a real aiohttp server (the shop front's app: create_app wires
`add_payment_routes`), against a temporary SQLite shop; the card form is filled in headless Chromium."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, List

import pytest
import requests
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import Engine

from shop.carts import add_item
from shop.checkout import place_order
from shop.db import create_schema, make_engine, session_scope
from shop.models import Cart, Order, Variant
from shop.payments import PaymentOutcome, PaymentSessionRecord, SandboxPaymentProvider, sign, SIGNATURE_HEADER
from tests.browser import launch_chromium
from tests.factories import add_product
from web.server import create_app
from web.settings import Settings

SECRET = "whsec_web_test_secret"
DETAILS = dict(name="Sam Rivera", email="sam@example.com", address_line="742 Maple Street", city="Portland",
               postcode="97205", country="US", shipping_method="standard")
CARDS = ("4242424242424242", "4242 4242 4242 4242", "4000000000000002", "4000 0000 0000 0002")
EVIL = "<script>alert('pwned')</script> Tee"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class PayServer:
    base_url: str
    engine: Engine
    provider: SandboxPaymentProvider
    db_path: Path
    variant_id: int
    paid: List[PaymentOutcome] = field(default_factory=list)
    orders: int = 0

    def new_payment(self, quantity: int = 1) -> tuple:
        """A chat cart, a pending order and its payment session: (order number, payment URL, session id)."""
        self.orders += 1
        chat = f"chat-{self.orders}"
        with session_scope(self.engine) as session:
            add_item(session, chat, self.variant_id, quantity)
            order = place_order(session, chat, DETAILS, datetime.utcnow())
            ps = self.provider.create_session(order)
            return order.number, ps.url, ps.id

    def order(self, number: str):
        with session_scope(self.engine) as session:
            order = session.execute(select(Order).where(Order.number == number)).scalar_one()
            cart = session.execute(select(Cart).where(Cart.session_id == order.conversation_id)
                                   .order_by(Cart.id)).scalars().first()
            return order.status, cart.status, session.get(Variant, self.variant_id).stock


class ThreadedApp:
    def __init__(self, app: web.Application, port: int):
        self.app, self.port = app, port
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.runner = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.started.set()
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> "ThreadedApp":
        self.thread.start()
        assert self.started.wait(10), "the payment test server did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
def pay_server(tmp_path, captured_logs) -> Iterator[PayServer]:
    db_path = tmp_path / "shop.db"
    engine = make_engine(f"sqlite:///{db_path}")
    create_schema(engine)
    with session_scope(engine) as session:
        variant_id = add_product(session, EVIL, "Apparel", "T-Shirt", "Bluefield",
                                 [("white", "M", 1500, 10)], handle="evil-tee").variants[0].id
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    provider = SandboxPaymentProvider(base_url=base_url, secret=SECRET)
    server = PayServer(base_url, engine, provider, db_path, variant_id)
    app = create_app(engine=engine, settings=Settings(host="127.0.0.1", port=port, shop_name="Test Trail Supply"),
                     payment_provider=provider, on_paid=server.paid.append)
    running = ThreadedApp(app, port).start()
    try:
        yield server
    finally:
        running.stop()
        engine.dispose()


def assert_no_card_data(server: PayServer, logs: Captured) -> None:
    files = sorted(server.db_path.parent.glob(server.db_path.name + "*"))
    assert files, "no database files"
    data = b"".join(path.read_bytes() for path in files)
    text = "\n".join(logs.lines)
    for number in CARDS:
        assert number.encode() not in data, f"{number} found in the database files"
        assert number not in text, f"{number} found in the logs"
    assert any("POST /pay/" in line for line in logs.lines), "the access log was not captured"


# ----------------------------------------------------------------------------- in the browser


EXPECTED_STATUSES = ("status of 400 (Bad Request)", "status of 402 (Payment Required)")  # refused card forms


def _watch(page, problems: List[str]) -> None:
    """Page errors and console errors (CSP violations among them), except Chromium's note on a 400/402 page."""
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.endswith(EXPECTED_STATUSES) else None)


def test_paying_in_the_browser_with_the_test_cards(pay_server, captured_logs):
    from playwright.sync_api import expect, sync_playwright

    good_number, good_url, good_id = pay_server.new_payment(quantity=2)
    bad_number, bad_url, _bad_id = pay_server.new_payment()
    problems: List[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            _watch(page, problems)

            # 4242...: paid
            page.goto(good_url)
            expect(page.locator(".sandbox-banner")).to_contain_text("Sandbox - test mode")
            expect(page.locator("[data-testid=amount]")).to_have_text("$38.39")  # 30.00 + shipping 5.99 + tax 2.40
            page.fill("#card_number", "4242 4242 4242 4242")
            page.fill("#expiry", "12/34")
            page.fill("#cvc", "123")
            page.click("#pay-button")
            page.wait_for_url(f"**/pay/{good_id}/success")
            expect(page.locator("#payment-status")).to_contain_text(f"order {good_number} is paid")
            expect(page.locator("main")).to_contain_text("Visa ending 4242")
            assert pay_server.order(good_number) == ("paid", "checked_out", 8)
            assert [o.order_number for o in pay_server.paid] == [good_number]

            # 4000...0002: declined, still pending, the card number is not echoed back
            page.goto(bad_url)
            page.fill("#card_number", "4000 0000 0000 0002")
            page.fill("#expiry", "12/34")
            page.fill("#cvc", "123")
            page.click("#pay-button")
            expect(page.locator("#payment-error")).to_have_text(
                "Your card was declined. No money was taken; you can try another card.")
            assert page.input_value("#card_number") == ""
            assert pay_server.order(bad_number) == ("pending_payment", "open", 8)

            # any other card: not accepted in test mode
            page.fill("#card_number", "4111 1111 1111 1111")
            page.fill("#expiry", "12/34")
            page.fill("#cvc", "123")
            page.click("#pay-button")
            expect(page.locator("#payment-error")).to_contain_text("Card not accepted in test mode")

            # cancel: nothing taken, order and cart kept
            page.click("#cancel-link")
            expect(page.locator("#payment-status")).to_contain_text("No money was taken")
            assert pay_server.order(bad_number) == ("pending_payment", "open", 8)
        finally:
            browser.close()
    assert problems == []
    assert [o.order_number for o in pay_server.paid] == [good_number]
    assert_no_card_data(pay_server, captured_logs)


# ----------------------------------------------------------------------------- over plain HTTP


def test_the_routes_on_the_shop_front_app(pay_server):
    base = pay_server.base_url
    assert requests.get(f"{base}/healthz", timeout=10).text == "ok"  # the shop front's own routes still work
    number, url, ps_id = pay_server.new_payment()
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; Tee" in page.text and "<script>" not in page.text
    assert "Sandbox - test mode" in page.text and "Test Trail Supply" in page.text
    missing = requests.get(f"{base}/pay/ps_test_nothing_to_see_here_0000", timeout=10)
    assert missing.status_code == 404 and "Payment not found" in missing.text
    assert requests.get(f"{base}/pay/{ps_id}/success", timeout=10).text.count("Not paid yet") >= 1
    # a form post with a bad card: 400 with the reason, the page again
    bad = requests.post(url, data={"card_number": "1234", "expiry": "12/34", "cvc": "123"}, timeout=10)
    assert bad.status_code == 400 and "A card number has 12 to 19 digits." in bad.text
    assert pay_server.order(number)[0] == "pending_payment"


def test_the_webhook_receiver_rejects_forgeries_and_replays(pay_server):
    from tests.unit.service_helpers import snapshot

    number, _url, ps_id = pay_server.new_payment()
    with session_scope(pay_server.engine) as session:
        attempt = pay_server.provider.submit_card(session, ps_id, card_number="4242424242424242", expiry="12/34",
                                                  cvc="123")
    event = attempt.event
    hook = f"{pay_server.base_url}/webhooks/payments"
    before = snapshot(pay_server.engine)
    body, headers = pay_server.provider.signed_request(event)
    forged = {**headers, SIGNATURE_HEADER: sign("not-the-secret", body, int(headers[SIGNATURE_HEADER][2:12]))}
    response = requests.post(hook, data=body, headers=forged, timeout=10)
    assert (response.status_code, response.json()["error"]) == (400, "bad_signature")
    response = requests.post(hook, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert (response.status_code, response.json()["error"]) == (400, "missing_signature")
    old_body, old_headers = pay_server.provider.signed_request(event, now=datetime.utcnow() - timedelta(minutes=6))
    response = requests.post(hook, data=old_body, headers=old_headers, timeout=10)
    assert (response.status_code, response.json()["error"]) == (400, "too_old")
    assert snapshot(pay_server.engine) == before and pay_server.order(number)[0] == "pending_payment"

    response = requests.post(hook, data=body, headers=headers, timeout=10)
    assert response.status_code == 200 and response.json() == {"received": True, "status": "paid", "changed": True}
    replay = requests.post(hook, data=body, headers=headers, timeout=10)
    assert replay.json() == {"received": True, "status": "duplicate", "changed": False}
    assert pay_server.order(number) == ("paid", "checked_out", 9)
    assert len(pay_server.paid) == 1
    with session_scope(pay_server.engine) as session:
        assert session.get(PaymentSessionRecord, ps_id).status == "succeeded"
