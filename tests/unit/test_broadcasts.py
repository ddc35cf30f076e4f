"""Promotion and new-arrivals broadcasts (shop/broadcasts.py) on SQLite and PostgreSQL, with a real local SMTP
server (aiosmtpd), a small HTTP server answering as Rasa's API does, and the real unsubscribe page."""
from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Tuple
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import select

from shop.broadcasts import (
    BroadcastDelivery, BroadcastError, Preferences, chat_broadcast, compose_message, consenting_subscribers,
    default_key, run_broadcast,
)
from shop.db import session_scope
from shop.mailer import SmtpMailer, SmtpSettings
from shop.models import Cart, Customer, DiscountCode, Product
from shop.newsletter import NewsletterSubscriber, is_subscribed, subscribe, unsubscribe
from tests.factories import add_product
from tests.unit.service_helpers import free_port, smtp_server

NOW = datetime(2024, 6, 15, 12, 0)
PUBLIC_URL = "http://shop.test"
ALEX_CHAT = "alex chat/1"  # odd characters: the conversation id must travel as one path segment


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    for name in ("SHOP_NEW_ARRIVAL_DAYS", "SHOP_BROADCAST_PRODUCTS", "SHOP_CHAT_SESSION_MINUTES", "RASA_TOKEN",
                 "SHOP_CURRENCY_SYMBOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOP_NAME", "Trail Supply")
    monkeypatch.setenv("SHOP_PUBLIC_URL", PUBLIC_URL)
    # Nothing listens here unless a test starts the Rasa stand-in: no chat is open.
    monkeypatch.setenv("RASA_URL", f"http://127.0.0.1:{free_port()}")


def fill_shop(engine) -> None:
    """New arrivals, products on sale, a public code and four subscribers (one unsubscribed)."""
    with session_scope(engine) as session:
        def product(title, category, ptype, variants, age_days, sale=None):
            row = add_product(session, title, category, ptype, "Ridgeline", [v[:4] for v in variants])
            row.created_at = NOW - timedelta(days=age_days)
            for variant, spec in zip(row.variants, variants):
                variant.compare_at_price_cents = spec[4] if len(spec) > 4 else None
            return row

        product("Storm Shell Jacket", "Jackets", "Rain Jacket",
                [("blue", "M", 9000, 5), ("red", "M", 9000, 5), ("blue", "L", 9500, 5)], age_days=3)
        product("Ember Parka", "Jackets", "Parka", [("red", "M", 15000, 4)], age_days=10)
        product("Trail Runner", "Shoes", "Running Shoes", [("black", "42", 11000, 3), ("black", "44", 11000, 2)],
                age_days=5)
        product("Basic Tee", "Tops", "T-Shirt", [("white", "S", 1500, 5), ("green", "M", 1500, 0)], age_days=1)
        product("Old Fleece", "Tops", "Fleece", [("grey", "M", 4000, 9, 5000)], age_days=200)
        product("Summit Boot", "Shoes", "Boots", [("black", "42", 10000, 2, 15000), ("black", "46", 10000, 2, 15000)],
                age_days=300)
        product("Ember Sale Parka", "Jackets", "Parka", [("red", "M", 9000, 3, 18000)], age_days=400)
        session.add(DiscountCode(code="SUMMER10", kind="percent", value=10, public=True, ends_at=NOW + timedelta(days=10)))
        session.add_all([
            Customer(email="alex@example.com", first_name="Alex", preferences={
                "size": "M", "shoe_size": "42", "liked_colors": ["blue"], "disliked_colors": ["red"],
                "favorite_categories": ["Shoes"]}),
            Customer(email="sam@example.com", first_name="Sam", preferences={"size": "XS", "shoe_size": "46"}),
        ])
        session.flush()
        for email in ("alex@example.com", "sam@example.com", "pat@example.com", "gone@example.com"):
            subscribe(session, email, "chat", NOW - timedelta(days=30))
        unsubscribe(session, "gone@example.com", now=NOW - timedelta(days=1))


@pytest.fixture
def shop(engine):
    fill_shop(engine)
    return engine


def subscriber(session, email: str) -> NewsletterSubscriber:
    return session.execute(select(NewsletterSubscriber).where(NewsletterSubscriber.email == email)).scalar_one()


def mailer(inbox) -> SmtpMailer:
    return SmtpMailer(SmtpSettings(host=inbox.host, port=inbox.port, sender="Trail Supply <news@shop.test>",
                                   timeout=5.0))


def bodies(inbox) -> Dict[str, str]:
    return {m.rcpt_tos[0]: m.body for m in inbox.messages}


def deliveries(engine) -> List[Tuple[str, str, str]]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(NewsletterSubscriber.email, BroadcastDelivery.channel, BroadcastDelivery.status)
            .join(NewsletterSubscriber, NewsletterSubscriber.id == BroadcastDelivery.subscriber_id)
            .order_by(NewsletterSubscriber.email, BroadcastDelivery.channel)
        ).all()
    return [tuple(row) for row in rows]


class RasaStandIn:
    """Answers the two calls of Rasa's HTTP API the broadcast makes, and records the intents triggered."""

    def __init__(self, last_events: Dict[str, datetime], accept: bool = True):
        self.last_events = last_events
        self.accept = accept
        self.triggered: List[Tuple[str, dict]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                conversation = unquote(urlsplit(self.path).path.split("/")[2])
                if conversation not in stand_in.last_events:
                    self.send_response(404)
                    self.end_headers()
                    return
                moment = stand_in.last_events[conversation].replace(tzinfo=timezone.utc).timestamp()
                self._reply(200, {"sender_id": conversation, "latest_event_time": moment})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.triggered.append((self.path, body))
                self._reply(200 if stand_in.accept else 500, {})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@contextmanager
def rasa(monkeypatch, last_events: Dict[str, datetime], accept: bool = True) -> Iterator[RasaStandIn]:
    stand_in = RasaStandIn(last_events, accept)
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RASA_URL", stand_in.url)
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()
        thread.join(5)


def alex_chats_in(engine, conversation_id: str) -> None:
    with session_scope(engine) as session:
        alex = session.execute(select(Customer).where(Customer.email == "alex@example.com")).scalar_one()
        session.add(Cart(session_id=conversation_id, customer_id=alex.id, status="open", created_at=NOW,
                         updated_at=NOW - timedelta(days=2)))


# ----------------------------------------------------------------------------- personalisation


def compose(engine, email: str, kind: str):
    with session_scope(engine) as session:
        return compose_message(session, subscriber(session, email), kind, "Subject", NOW)


def test_new_arrivals_fit_the_subscribers_sizes_and_colours_favourite_category_first(shop):
    message = compose(shop, "alex@example.com", "new-arrivals")
    # Ember Parka only comes in red (disliked), Basic Tee not in size M in stock, Old Fleece is not new.
    assert message.product_handles == ("trail-runner", "storm-shell-jacket")
    assert message.body == (
        "Hi Alex,\n\n"
        "New at Trail Supply, picked for you:\n"
        "- Trail Runner by Ridgeline: $110.00\n"
        "  New in Shoes, one of your favourite categories; in stock in your size 42.\n"
        f"  {PUBLIC_URL}/products/trail-runner\n"
        "- Storm Shell Jacket by Ridgeline: $90.00\n"
        "  New in Jackets; in stock in your size M; available in blue, a colour you like.\n"
        f"  {PUBLIC_URL}/products/storm-shell-jacket\n\n"
        "You get this because you subscribed to the Trail Supply newsletter.\n"
        f"Unsubscribe: {message.unsubscribe_url}\n"
    )
    assert message.unsubscribe_url.startswith(f"{PUBLIC_URL}/newsletter/unsubscribe/")


def test_without_stored_preferences_the_newest_arrivals_in_stock_come_first(shop, monkeypatch):
    monkeypatch.setenv("SHOP_BROADCAST_PRODUCTS", "3")
    message = compose(shop, "pat@example.com", "new-arrivals")
    assert message.product_handles == ("basic-tee", "storm-shell-jacket", "trail-runner")
    assert message.body.startswith("Hi,\n\nNew at Trail Supply, picked for you:\n- Basic Tee by Ridgeline: $15.00\n"
                                   "  New in Tops.\n")


def test_the_new_arrival_window_comes_from_the_environment(shop, monkeypatch):
    monkeypatch.setenv("SHOP_NEW_ARRIVAL_DAYS", "4")
    assert compose(shop, "pat@example.com", "new-arrivals").product_handles == ("basic-tee", "storm-shell-jacket")
    monkeypatch.setenv("SHOP_NEW_ARRIVAL_DAYS", "soon")
    with pytest.raises(ValueError, match="SHOP_NEW_ARRIVAL_DAYS='soon' is not a whole number"):
        compose(shop, "pat@example.com", "new-arrivals")


def test_a_promotion_offers_sale_products_that_fit_and_the_public_codes(shop):
    message = compose(shop, "alex@example.com", "promotion")
    # Ember Sale Parka is red (disliked); the boot in 42 is their shoe size and saves the most.
    assert message.product_handles == ("summit-boot", "old-fleece")
    assert "- Summit Boot by Ridgeline: $100.00 (was $150.00)\n  On sale in Shoes, one of your favourite " \
           "categories; in stock in your size 42.\n" in message.body
    assert "Codes you can use now:\n- SUMMER10: 10% off (until" in message.body


def test_nothing_fitting_means_no_message(shop):
    assert compose(shop, "sam@example.com", "new-arrivals") is None  # sizes XS / 46: nothing new fits


def test_preferences_never_offer_a_disliked_colour_or_another_size():
    prefs = Preferences(size="M", shoe_size="42", disliked_colors=("red",))

    class V:
        def __init__(self, color, size, stock=1):
            self.color, self.size, self.stock = color, size, stock

    assert prefs.fits(V("Blue", "medium"))
    assert not prefs.fits(V("Red", "M"))
    assert not prefs.fits(V("blue", "L"))
    assert prefs.fits(V("black", "42")) and not prefs.fits(V("black", "43"))
    assert prefs.fits(V("black", "One Size"))
    assert not prefs.fits(V("blue", "M", stock=0))


def test_only_subscribers_whose_consent_stands_are_recipients(shop):
    with session_scope(shop) as session:
        assert [s.email for s in consenting_subscribers(session)] == [
            "alex@example.com", "sam@example.com", "pat@example.com"]


# ----------------------------------------------------------------------------- sending once


def test_a_broadcast_emails_the_consenting_subscribers_once_even_when_run_again(shop):
    with smtp_server() as inbox:
        first = run_broadcast(shop, "new-arrivals", subject="Just in", now=NOW, mailer=mailer(inbox))
        again = run_broadcast(shop, "new-arrivals", subject="Just in", now=NOW, mailer=mailer(inbox))
    assert sorted(bodies(inbox)) == ["alex@example.com", "pat@example.com"]  # not sam (nothing fits), not gone
    assert {m.message["Subject"] for m in inbox.messages} == {"Just in"}
    assert (first.recipients, first.emailed, first.nothing_fits, first.already_sent) == (3, 2, 1, 0)
    assert (again.emailed, again.already_sent) == (0, 2)
    assert first.key == again.key == default_key("new-arrivals", NOW) == "new-arrivals-2024-06-15"
    assert deliveries(shop) == [("alex@example.com", "email", "sent"), ("pat@example.com", "email", "sent")]
    assert first.lines()[0] == ("New-arrivals broadcast new-arrivals-2024-06-15: 2 emailed, 0 said in an open chat, "
                                "0 already sent earlier, 1 with nothing fitting their preferences (of 3 consenting "
                                "subscribers).")


def test_a_refused_message_is_retried_by_the_next_run_and_nothing_else_is_resent(shop):
    with smtp_server(refuse=["pat@example.com"]) as inbox:
        first = run_broadcast(shop, "promotion", now=NOW, mailer=mailer(inbox))
    assert sorted(bodies(inbox)) == ["alex@example.com", "sam@example.com"]
    assert [(email, channel) for email, channel, _why in first.failed] == [("pat@example.com", "email")]
    assert "Run the same command again" in "\n".join(first.lines())
    with smtp_server() as inbox:
        second = run_broadcast(shop, "promotion", now=NOW + timedelta(hours=1), mailer=mailer(inbox))
    assert sorted(bodies(inbox)) == ["pat@example.com"]
    assert (second.emailed, second.already_sent, second.failed) == (1, 2, [])


def test_a_send_cut_short_by_a_crash_is_never_repeated(shop):
    with smtp_server() as inbox:
        run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox), key="june-news")
    with session_scope(shop) as session:
        row = session.execute(select(BroadcastDelivery).join(NewsletterSubscriber)
                              .where(NewsletterSubscriber.email == "pat@example.com")).scalar_one()
        row.status, row.sent_at = "sending", None  # as left by a run killed between claim and send
    with smtp_server() as inbox:
        report = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox), key="june-news")
    assert inbox.messages == []
    assert (report.interrupted, report.already_sent) == (1, 1)


def test_a_mail_server_that_is_not_there_stops_before_anything_is_recorded(shop):
    down = SmtpMailer(SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2.0))
    with pytest.raises(BroadcastError, match="Nothing was sent"):
        run_broadcast(shop, "promotion", now=NOW, mailer=down)
    assert deliveries(shop) == []


def test_a_dry_run_sends_and_records_nothing(shop):
    with smtp_server() as inbox:
        report = run_broadcast(shop, "new-arrivals", dry_run=True, now=NOW, mailer=mailer(inbox))
    assert inbox.messages == [] and deliveries(shop) == []
    assert [email for email, _chat, _message in report.planned] == ["alex@example.com", "pat@example.com"]
    assert report.lines()[1] == ("2 of 3 consenting subscribers would get it (0 also in their open chat); "
                                 "1 have nothing fitting their preferences.")


# ----------------------------------------------------------------------------- the unsubscribe link


def test_the_unsubscribe_link_in_the_email_unsubscribes_on_the_shop_front(shop):
    from aiohttp.test_utils import TestClient, TestServer

    from web.server import create_app
    from web.settings import Settings

    with smtp_server() as inbox:
        run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    link = bodies(inbox)["alex@example.com"].rstrip().rsplit("Unsubscribe: ", 1)[1]
    assert link.startswith(f"{PUBLIC_URL}/newsletter/unsubscribe/")
    path = urlsplit(link).path

    async def follow() -> Tuple[int, str, int, str]:
        async with TestClient(TestServer(create_app(engine=shop, settings=Settings(shop_name="Trail Supply")))) as client:
            page = await client.get(path)
            done = await client.post(path)
            return page.status, await page.text(), done.status, await done.text()

    page_status, page, done_status, done = asyncio.run(follow())
    assert page_status == 200 and "Stop getting the Trail Supply newsletter?" in page
    assert done_status == 200 and "unsubscribed" in done
    with session_scope(shop) as session:
        assert not is_subscribed(session, "alex@example.com")
    with smtp_server() as inbox:
        run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox), key="second-news")
    assert sorted(bodies(inbox)) == ["pat@example.com"]


# ----------------------------------------------------------------------------- in an open chat


def test_a_subscriber_with_an_open_chat_also_gets_it_there_once(shop, monkeypatch):
    alex_chats_in(shop, ALEX_CHAT)
    with rasa(monkeypatch, {ALEX_CHAT: NOW - timedelta(minutes=5)}) as stand_in, smtp_server() as inbox:
        first = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
        again = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    assert (first.emailed, first.chatted, again.chatted, again.already_sent) == (2, 1, 0, 3)
    assert len(stand_in.triggered) == 1
    path, body = stand_in.triggered[0]
    assert path == "/conversations/alex%20chat%2F1/trigger_intent?output_channel=latest"
    assert body["name"] == "EXTERNAL_broadcast"
    delivery_id = body["entities"]["broadcast_delivery"]
    with session_scope(shop) as session:
        said = chat_broadcast(session, delivery_id, ALEX_CHAT)
        assert said.body == bodies(inbox)["alex@example.com"]
        assert said.product_handles == ("trail-runner", "storm-shell-jacket")
        assert said.email == "alex@example.com" and "/newsletter/unsubscribe/" in said.unsubscribe_url
        # Typed into another chat, the id shows nothing.
        assert chat_broadcast(session, delivery_id, "someone-else") is None
        assert chat_broadcast(session, "not a number", ALEX_CHAT) is None
    assert ("alex@example.com", "chat", "sent") in deliveries(shop)


def test_a_chat_quiet_for_longer_than_a_session_gets_only_the_email(shop, monkeypatch):
    alex_chats_in(shop, ALEX_CHAT)
    with rasa(monkeypatch, {ALEX_CHAT: NOW - timedelta(minutes=61)}) as stand_in, smtp_server() as inbox:
        report = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    assert (report.emailed, report.chatted, stand_in.triggered) == (2, 0, [])


def test_a_chat_message_rasa_refused_is_retried_later(shop, monkeypatch):
    alex_chats_in(shop, ALEX_CHAT)
    with rasa(monkeypatch, {ALEX_CHAT: NOW - timedelta(minutes=1)}, accept=False), smtp_server() as inbox:
        first = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    assert first.failed == [("alex@example.com", "chat", "Rasa did not accept the message (see the log)")]
    with rasa(monkeypatch, {ALEX_CHAT: NOW - timedelta(minutes=1)}) as stand_in, smtp_server() as inbox:
        second = run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    assert inbox.messages == []  # the emails went out the first time
    assert (second.chatted, len(stand_in.triggered)) == (1, 1)


def test_an_unsubscribed_subscriber_is_not_shown_a_chat_broadcast(shop, monkeypatch):
    alex_chats_in(shop, ALEX_CHAT)
    with rasa(monkeypatch, {ALEX_CHAT: NOW}) as stand_in, smtp_server() as inbox:
        run_broadcast(shop, "new-arrivals", now=NOW, mailer=mailer(inbox))
    delivery_id = stand_in.triggered[0][1]["entities"]["broadcast_delivery"]
    with session_scope(shop) as session:
        unsubscribe(session, "alex@example.com", now=NOW)
    with session_scope(shop) as session:
        assert chat_broadcast(session, delivery_id, ALEX_CHAT) is None


# ----------------------------------------------------------------------------- the command


def test_the_broadcast_command(tmp_path, capsys, monkeypatch):
    from shop.cli import main
    from shop.db import create_schema, make_engine

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    create_schema(engine)
    fill_shop(engine)
    with session_scope(engine) as session:  # the command runs today: the products keep their ages
        for product in session.execute(select(Product)).scalars():
            product.created_at += datetime.utcnow() - NOW
    engine.dispose()
    assert main(["broadcast", "--kind", "new-arrivals", "--days", "4", "--dry-run", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "Dry run of new-arrivals broadcast new-arrivals-" in out
    assert "  pat@example.com: basic-tee, storm-shell-jacket" in out
    with smtp_server() as inbox:
        monkeypatch.setenv("SMTP_HOST", inbox.host)
        monkeypatch.setenv("SMTP_PORT", str(inbox.port))
        assert main(["broadcast", "--kind", "promotion", "--key", "summer", "--database-url", url]) == 0
        assert main(["broadcast", "--kind", "promotion", "--key", "summer", "--database-url", url]) == 0
        out = capsys.readouterr().out
        assert main(["broadcast", "--kind", "new-arrivals", "--key", "summer", "--database-url", url]) == 1
    assert "Promotion broadcast summer: 3 emailed" in out
    assert "Promotion broadcast summer: 0 emailed, 0 said in an open chat, 3 already sent earlier" in out
    assert sorted(bodies(inbox)) == ["alex@example.com", "pat@example.com", "sam@example.com"]
    assert "the broadcast 'summer' is a promotion broadcast, not new-arrivals" in capsys.readouterr().err
