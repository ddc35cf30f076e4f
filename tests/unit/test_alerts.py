"""Back-in-stock and price-drop alerts on SQLite and PostgreSQL: subscribing, one notice per alert, chat while
the shopper is around, email (through a real local SMTP server) when they consented and are away."""
from __future__ import annotations

from datetime import timedelta

import pytest
from shop.alerts import STOCK_ALERT_INTENT, StockAlert, alert_notice, choose_variant, run_due_alerts, subscribe
from shop.db import session_scope
from shop.mailer import SmtpMailer, SmtpSettings
from shop.models import Variant
from tests.factories import add_product
from tests.unit.recovery_helpers import T0, RecordingSender
from tests.unit.service_helpers import free_port, smtp_server


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("SHOP_ALERT_CHAT_ACTIVE_MINUTES", "30")
    monkeypatch.setenv("SHOP_WORKER_RETRY_SECONDS", "60")
    monkeypatch.setenv("SHOP_PUBLIC_URL", "http://shop.test")


@pytest.fixture
def jacket(engine):
    """blue M sold out, blue L sold out, black M in stock; all $89.00."""
    with session_scope(engine) as session:
        product = add_product(session, "Harbor Denim Jacket", "Apparel", "Jackets", "Bluewater",
                              [("blue", "M", 8900, 0), ("blue", "L", 8900, 0), ("black", "M", 8900, 4)])
        return {f"{v.color} {v.size}": v.id for v in product.variants}


def later(minutes: float):
    return T0 + timedelta(minutes=minutes)


def change(engine, variant_id, *, stock=None, price=None):
    with session_scope(engine) as session:
        variant = session.get(Variant, variant_id)
        if stock is not None:
            variant.stock = stock
        if price is not None:
            variant.price_cents = price


def sub(engine, variant_id, kind="back_in_stock", **kwargs):
    with session_scope(engine) as session:
        result = subscribe(session, variant_id=variant_id, kind=kind, now=T0, **kwargs)
        return result.created, result.reason, result.alert.id if result.alert else None


def run(engine, minutes, chat, email=None, **kwargs) -> int:
    with session_scope(engine) as session:
        return run_due_alerts(session, later(minutes), chat, email or SmtpMailer(SmtpSettings(port=free_port())).send,
                              **kwargs)


def test_choosing_the_variant_to_watch(engine, jacket):
    with session_scope(engine) as session:
        product = session.get(Variant, jacket["blue M"]).product
        assert choose_variant(product, "back_in_stock", size="M", color="blue").variant.id == jacket["blue M"]
        ambiguous = choose_variant(product, "back_in_stock", color="blue")
        assert (ambiguous.variant, ambiguous.reason, ambiguous.options) == (None, "ambiguous", ("blue / M", "blue / L"))
        in_stock = choose_variant(product, "back_in_stock", color="black")
        assert (in_stock.reason, in_stock.options) == ("in_stock", ("black / M",))
        assert choose_variant(product, "back_in_stock", color="red").reason == "no_such_variant"
        assert choose_variant(product, "price_drop").variant.id == jacket["blue M"]  # cheapest, then first


def test_subscribing_is_idempotent_and_refuses_what_makes_no_sense(engine, jacket):
    created, reason, alert_id = sub(engine, jacket["blue M"], conversation_id="chat-1")
    assert (created, reason) == (True, "")
    assert sub(engine, jacket["blue M"], conversation_id="chat-1") == (False, "", alert_id)
    assert sub(engine, jacket["black M"], conversation_id="chat-1")[:2] == (False, "in_stock")
    assert sub(engine, jacket["blue M"], kind="sometime", conversation_id="chat-1")[:2] == (False, "unknown_kind")
    assert sub(engine, jacket["blue M"])[:2] == (False, "no_channel")
    assert sub(engine, jacket["blue M"], email="not-an-address", email_consent=True)[:2] == (False, "invalid_email")
    # without consent an email is not kept
    _, _, other = sub(engine, jacket["blue L"], conversation_id="chat-1", email="sam@example.com")
    with session_scope(engine) as session:
        alert = session.get(StockAlert, other)
        assert (alert.email, alert.email_consent) == ("", False)


def test_back_in_stock_is_told_once_in_the_chat(engine, jacket):
    _, _, alert_id = sub(engine, jacket["blue M"], conversation_id="chat-1")
    chat = RecordingSender()

    assert run(engine, 1, chat) == 0
    change(engine, jacket["blue M"], stock=3)
    assert run(engine, 2, chat) == 1
    assert chat.calls == [("chat-1", STOCK_ALERT_INTENT, {"stock_alert_id": str(alert_id)})]
    assert run(engine, 3, chat) == 0
    with session_scope(engine) as session:
        notice = alert_notice(session, alert_id)
        alert = session.get(StockAlert, alert_id)
        assert (alert.status, alert.channel, alert.notified_at) == ("notified", "chat", later(2))
    assert notice.text == "Good news: Harbor Denim Jacket (blue / M) is back in stock, at $89.00."
    assert notice.url == "http://shop.test/products/harbor-denim-jacket"
    assert (notice.color, notice.size) == ("blue", "M")


def test_a_price_drop_is_told_only_when_it_is_cheaper_than_when_asked(engine, jacket):
    _, _, alert_id = sub(engine, jacket["black M"], kind="price_drop", conversation_id="chat-1")
    chat = RecordingSender()
    change(engine, jacket["black M"], price=9500)
    assert run(engine, 1, chat) == 0
    change(engine, jacket["black M"], price=7900)
    assert run(engine, 2, chat) == 1
    with session_scope(engine) as session:
        assert alert_notice(session, alert_id).text == (
            "Good news: Harbor Denim Jacket (black / M) is now $79.00 (it was $89.00 when you asked me to watch it).")
        assert session.get(StockAlert, alert_id).notified_price_cents == 7900


def test_a_consenting_shopper_who_is_away_gets_an_email(engine, jacket):
    sub(engine, jacket["blue M"], conversation_id="chat-1", email="Sam@Example.com", email_consent=True)
    change(engine, jacket["blue M"], stock=1)
    chat = RecordingSender()
    with smtp_server() as inbox:
        mailer = SmtpMailer(SmtpSettings(host=inbox.host, port=inbox.port, sender="Shop <shop@example.com>"))
        assert run(engine, 45, chat, mailer.send) == 1  # asked 45 minutes ago, nothing since
    assert chat.calls == []
    [mail] = inbox.messages
    assert mail.rcpt_tos == ["sam@example.com"]
    assert mail.message["Subject"] == "Back in stock: Harbor Denim Jacket (blue / M)"
    assert "is back in stock, at $89.00" in mail.body and "http://shop.test/products/harbor-denim-jacket" in mail.body


def test_a_consenting_shopper_who_is_still_chatting_gets_it_in_the_chat(engine, jacket):
    sub(engine, jacket["blue M"], conversation_id="chat-1", email="sam@example.com", email_consent=True)
    change(engine, jacket["blue M"], stock=1)
    chat = RecordingSender()
    assert run(engine, 45, chat, last_activity={"chat-1": later(40)}.get) == 1
    assert [c[0] for c in chat.calls] == ["chat-1"]


def test_without_consent_an_away_shopper_still_gets_it_in_the_chat(engine, jacket):
    sub(engine, jacket["blue M"], conversation_id="chat-1")
    change(engine, jacket["blue M"], stock=1)
    chat = RecordingSender()
    assert run(engine, 600, chat) == 1
    assert len(chat.calls) == 1


def test_failed_deliveries_are_retried_later_and_nothing_is_lost(engine, jacket):
    _, _, chat_alert = sub(engine, jacket["blue M"], conversation_id="chat-1")
    _, _, mail_alert = sub(engine, jacket["blue L"], email="sam@example.com", email_consent=True)
    change(engine, jacket["blue M"], stock=1)
    change(engine, jacket["blue L"], stock=1)
    down = RecordingSender(accept=False)

    assert run(engine, 1, down) == 0  # Rasa down, and no mail server on that port
    assert run(engine, 1.5, down) == 0 and len(down.calls) == 1  # waits SHOP_WORKER_RETRY_SECONDS
    with session_scope(engine) as session:
        assert [session.get(StockAlert, i).attempts for i in (chat_alert, mail_alert)] == [1, 1]
    up = RecordingSender()
    with smtp_server() as inbox:
        mailer = SmtpMailer(SmtpSettings(host=inbox.host, port=inbox.port, sender="Shop <shop@example.com>"))
        assert run(engine, 2, up, mailer.send) == 2
    assert len(up.calls) == 1 and len(inbox.messages) == 1

