"""Shared steps of the cart-reminder, alert, worker and report tests: a cart, a checkout paid with the sandbox
card, a sender that records what would reach Rasa, and a real HTTP server standing in for Rasa's API."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from shop.carts import add_item
from shop.checkout import place_order
from shop.db import session_scope
from shop.models import Order
from shop.payments import SandboxPaymentProvider, handle_payment_event
from shop.promotions import apply_code
from shop.reminders import CartReminder
from tests.unit.service_helpers import catalog, free_port

T0 = datetime(2024, 6, 15, 12, 0)
DELAY = 60  # seconds: SHOP_CART_REMINDER_DELAY_SECONDS in these tests


def use_reminder_settings(monkeypatch) -> None:
    """The cart-reminder settings every reminder and worker test runs with."""
    monkeypatch.setenv("SHOP_CART_REMINDER_DELAY_SECONDS", str(DELAY))
    monkeypatch.setenv("SHOP_CART_REMINDER_MAX", "2")
    monkeypatch.setenv("SHOP_CART_REMINDER_DISCOUNT_PERCENT", "10")
    monkeypatch.setenv("SHOP_WORKER_RETRY_SECONDS", "30")


@pytest.fixture
def shop(engine):
    """The tiny catalog of service_helpers: variant name -> id."""
    with session_scope(engine) as session:
        return {name: variant.id for name, variant in catalog(session).items()}
DETAILS = dict(name="Sam Rivera", email="sam@example.com", address_line="742 Maple Street", city="Portland",
               postcode="97205", country="US", shipping_method="standard")


@dataclass
class RecordingSender:
    """Stands in for shop.rasa_client.trigger_intent: records each call; `accept` says whether Rasa took it."""

    accept: bool = True
    calls: List[Tuple[str, str, Dict[str, Any]]] = field(default_factory=list)

    def __call__(self, conversation_id: str, intent: str, entities: Mapping[str, Any]) -> bool:
        self.calls.append((conversation_id, intent, dict(entities)))
        return self.accept


def fill_cart(engine: Engine, conversation_id: str, *lines: Tuple[int, int], now: datetime = T0) -> None:
    with session_scope(engine) as session:
        for variant_id, quantity in lines:
            add_item(session, conversation_id, variant_id, quantity, now=now)


def check_out_and_pay(engine: Engine, conversation_id: str, now: datetime, code: Optional[str] = None) -> Order:
    """Apply `code`, place the order and pay it with the sandbox's success card, all at `now`."""
    provider = SandboxPaymentProvider(base_url="http://shop.test", secret="whsec_unit_test_secret")
    with session_scope(engine) as session:
        if code:
            result = apply_code(session, conversation_id, code, now)
            assert result.ok, result.message
        order = place_order(session, conversation_id, DETAILS, now)
        payment = provider.create_session(order, now=now)
        attempt = provider.submit_card(session, payment.id, card_number="4242 4242 4242 4242", expiry="12/30",
                                       cvc="123", now=now)
        assert handle_payment_event(session, attempt.event, now=now).status == "paid"
        session.flush()
        return session.execute(select(Order).where(Order.id == order.id)).scalar_one()


def reminders(engine: Engine, conversation_id: str) -> List[Tuple[int, str, str, int]]:
    """(sequence, status, stop_reason, attempts) of the conversation's reminders, oldest first."""
    with session_scope(engine) as session:
        rows = session.execute(select(CartReminder).where(CartReminder.conversation_id == conversation_id)
                               .order_by(CartReminder.id)).scalars().all()
        return [(r.sequence, r.status, r.stop_reason, r.attempts) for r in rows]


@dataclass
class FakeRasa:
    """What reached the stand-in Rasa server, and how it answers."""

    url: str
    triggered: List[Tuple[str, Dict[str, str], Dict[str, Any]]] = field(default_factory=list)
    latest_event_time: Dict[str, float] = field(default_factory=dict)
    status: int = 200


@contextmanager
def fake_rasa_server() -> Iterator[FakeRasa]:
    """A real HTTP server on a free local port speaking the two calls of shop.rasa_client:
    POST /conversations/<id>/trigger_intent and GET /conversations/<id>/tracker."""
    port = free_port()
    rasa = FakeRasa(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: Dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _conversation(self) -> Tuple[str, str, Dict[str, str]]:
            parts = urlsplit(self.path)
            _, _, conversation, action = parts.path.split("/", 3)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            return unquote(conversation), action, query

        def do_POST(self):  # noqa: N802 - http.server's naming
            conversation, action, query = self._conversation()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if action != "trigger_intent" or rasa.status != 200:
                self._reply(rasa.status if rasa.status != 200 else 404, {"status": "failure"})
                return
            rasa.triggered.append((conversation, query, body))
            self._reply(200, {"tracker": {"sender_id": conversation}})

        def do_GET(self):  # noqa: N802
            conversation, action, _ = self._conversation()
            self._reply(200, {"sender_id": conversation,
                              "latest_event_time": rasa.latest_event_time.get(conversation)})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rasa
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def url_of(engine: Engine) -> str:
    """A URL reaching the same database as `engine` (its PostgreSQL test schema included), for code that
    starts from a URL: the CLI, a restarted worker, a subprocess."""
    from sqlalchemy import text

    from tests.unit.conftest import postgres_url_for_schema

    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return postgres_url_for_schema(connection.execute(text("SELECT current_schema()")).scalar_one())
    return engine.url.render_as_string(hide_password=False)
