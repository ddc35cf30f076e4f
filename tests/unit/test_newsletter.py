"""The newsletter: explicit consent recorded with time and source; unsubscribe by email or token, honoured."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from shop.db import session_scope
from shop.newsletter import (
    NewsletterConsent,
    NewsletterError,
    NewsletterSubscriber,
    is_subscribed,
    subscribe,
    unsubscribe,
)
from tests.unit.service_helpers import snapshot

NOW = datetime(2024, 6, 15, 12, 0)
LATER = datetime(2024, 7, 1, 9, 30)


def test_subscribe_records_consent_with_time_source_and_wording(engine, monkeypatch):
    monkeypatch.setenv("SHOP_NAME", "Test Trail Supply")
    monkeypatch.setenv("SHOP_PUBLIC_URL", "https://shop.example")
    with session_scope(engine) as session:
        result = subscribe(session, " Sam@Example.com ", "chat", NOW)
    assert (result.email, result.status, result.subscribed) == ("sam@example.com", "subscribed", True)
    assert result.message == ("Thanks! sam@example.com is subscribed to our newsletter. Every email has a link to "
                              "unsubscribe, or just tell me.")
    with session_scope(engine) as session:
        row = session.execute(select(NewsletterSubscriber)).scalar_one()
        assert (row.email, row.status, row.consented_at, row.consent_source) == ("sam@example.com", "subscribed", NOW,
                                                                                 "chat")
        assert len(row.unsubscribe_token) >= 30
        assert result.unsubscribe_url == f"https://shop.example/newsletter/unsubscribe/{row.unsubscribe_token}"
        log = session.execute(select(NewsletterConsent)).scalar_one()
        assert (log.action, log.source, log.created_at) == ("subscribe", "chat", NOW)
        assert log.consent_text == ("Yes, send me the Test Trail Supply newsletter by email. I can unsubscribe at any "
                                    "time.")
        assert is_subscribed(session, "SAM@example.com") and not is_subscribed(session, "other@example.com")
        assert not is_subscribed(session, "not an email")


def test_subscribing_twice_changes_nothing(engine):
    with session_scope(engine) as session:
        subscribe(session, "sam@example.com", "chat", NOW)
    before = snapshot(engine)
    with session_scope(engine) as session:
        again = subscribe(session, "sam@example.com", "web_footer", LATER)
    assert (again.status, again.message) == ("already_subscribed", "sam@example.com is already subscribed to our newsletter.")
    assert snapshot(engine) == before


def test_unsubscribe_by_email_and_by_token_is_honoured(engine, monkeypatch):
    monkeypatch.delenv("SHOP_NAME", raising=False)
    with session_scope(engine) as session:
        subscribe(session, "sam@example.com", "chat", NOW)
        subscribe(session, "kim@example.com", "checkout", NOW, consent_text="Send me offers, please.")
        token = session.execute(select(NewsletterSubscriber.unsubscribe_token)
                                .where(NewsletterSubscriber.email == "kim@example.com")).scalar_one()
    with session_scope(engine) as session:
        by_email = unsubscribe(session, "SAM@example.com", now=LATER)
        by_token = unsubscribe(session, token, source="email_link", now=LATER)
    assert (by_email.status, by_email.email, by_email.subscribed) == ("unsubscribed", "sam@example.com", False)
    assert by_email.message == "You're unsubscribed: you won't get our newsletter."
    assert (by_token.status, by_token.email) == ("unsubscribed", "kim@example.com")
    with session_scope(engine) as session:
        assert not is_subscribed(session, "sam@example.com") and not is_subscribed(session, "kim@example.com")
        rows = session.execute(select(NewsletterSubscriber).order_by(NewsletterSubscriber.email)).scalars().all()
        assert [(r.email, r.status, r.unsubscribed_at) for r in rows] == [
            ("kim@example.com", "unsubscribed", LATER), ("sam@example.com", "unsubscribed", LATER)]
        log = session.execute(select(NewsletterConsent.action, NewsletterConsent.source, NewsletterConsent.consent_text)
                              .order_by(NewsletterConsent.id)).all()
        assert [tuple(r) for r in log] == [
            ("subscribe", "chat", "Yes, send me the Northwind Outfitters newsletter by email. I can unsubscribe at any "
                                  "time."),
            ("subscribe", "checkout", "Send me offers, please."),
            ("unsubscribe", "request", ""), ("unsubscribe", "email_link", "")]


def test_unsubscribing_someone_not_on_the_list_reveals_nothing(engine):
    with session_scope(engine) as session:
        result = unsubscribe(session, "nobody@example.com", now=NOW)
        assert (result.status, result.message) == ("not_subscribed", "You're unsubscribed: you won't get our newsletter.")
        bad_token = unsubscribe(session, "x" * 32, now=NOW)
        assert bad_token.status == "not_subscribed"
        assert bad_token.message == "That unsubscribe link isn't valid; tell me the email address instead."
        with pytest.raises(NewsletterError):
            unsubscribe(session, "'; DROP TABLE newsletter_subscribers; --", now=NOW)


def test_resubscribing_records_fresh_consent_and_keeps_the_token(engine):
    with session_scope(engine) as session:
        first = subscribe(session, "sam@example.com", "chat", NOW)
        unsubscribe(session, "sam@example.com", now=NOW)
        again = subscribe(session, "sam@example.com", "web_footer", LATER)
    assert again.status == "resubscribed" and again.unsubscribe_url == first.unsubscribe_url
    with session_scope(engine) as session:
        row = session.execute(select(NewsletterSubscriber)).scalar_one()
        assert (row.status, row.consented_at, row.consent_source, row.unsubscribed_at) == (
            "subscribed", LATER, "web_footer", None)
        assert session.execute(select(NewsletterConsent.action).order_by(NewsletterConsent.id)).scalars().all() == [
            "subscribe", "unsubscribe", "subscribe"]


@pytest.mark.parametrize("email, source, code", [("not-an-email", "chat", "invalid_email"),
                                                 ("", "chat", "invalid_email"),
                                                 ("sam@example.com", "  ", "missing_source")])
def test_bad_requests_are_refused_and_change_nothing(engine, email, source, code):
    before = snapshot(engine)
    with session_scope(engine) as session:
        with pytest.raises(NewsletterError) as caught:
            subscribe(session, email, source, NOW)
    assert caught.value.code == code and caught.value.message
    assert snapshot(engine) == before
