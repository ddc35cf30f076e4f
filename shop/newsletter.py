"""The newsletter: subscribe only with explicit consent (recorded with time, source and wording),
unsubscribe by email or by the subscriber's personal token (the link in every newsletter), honoured at once.

Call `subscribe` only after the shopper said yes to the wording in `consent_text`; every subscribe and
unsubscribe is kept in `newsletter_consent_log` as proof of consent. Unsubscribing an address that is not
subscribed gives the same reply as a real one, so the reply never reveals who is on the list.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Optional
from urllib.parse import quote

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, select
from sqlalchemy.orm import Session

from shop.carts import CartError, normalise_email, utc_naive
from shop.models import Base
from shop.settings import absolute_url, shop_settings

__all__ = [
    "DEFAULT_CONSENT_TEXT", "NewsletterConsent", "NewsletterError", "NewsletterSubscriber", "SubscriptionResult",
    "is_subscribed", "subscribe", "unsubscribe", "unsubscribe_url",
]

DEFAULT_CONSENT_TEXT = "Yes, send me the {shop} newsletter by email. I can unsubscribe at any time."
UNSUBSCRIBE_PATH = "/newsletter/unsubscribe/{token}"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
SOURCES_MAX = 40


class NewsletterSubscriber(Base):
    __tablename__ = "newsletter_subscribers"
    id = Column(Integer, primary_key=True)
    email = Column(String(255), nullable=False, unique=True)  # lower-case
    status = Column(String(20), nullable=False, default="subscribed")  # subscribed, unsubscribed
    unsubscribe_token = Column(String(100), nullable=False, unique=True)
    consented_at = Column(DateTime, nullable=True)  # the latest subscribe
    consent_source = Column(String(40), nullable=False, default="")  # e.g. chat, web_footer, checkout
    unsubscribed_at = Column(DateTime, nullable=True)
    created_at = Column(DateTime, nullable=False)


class NewsletterConsent(Base):
    """Every subscribe and unsubscribe, with time, source and (for subscribes) the wording agreed to."""

    __tablename__ = "newsletter_consent_log"
    id = Column(Integer, primary_key=True)
    subscriber_id = Column(Integer, ForeignKey("newsletter_subscribers.id", ondelete="CASCADE"), nullable=False,
                           index=True)
    action = Column(String(20), nullable=False)  # subscribe, unsubscribe
    source = Column(String(40), nullable=False)
    consent_text = Column(String(500), nullable=False, default="")
    created_at = Column(DateTime, nullable=False)


class NewsletterError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SubscriptionResult:
    email: str
    status: str  # subscribed | already_subscribed | resubscribed | unsubscribed | not_subscribed
    subscribed: bool
    unsubscribe_url: Optional[str]
    message: str


def unsubscribe_url(token: str) -> str:
    return absolute_url(UNSUBSCRIBE_PATH.replace("{token}", quote(token, safe="")))


def _subscriber(session: Session, email: str) -> Optional[NewsletterSubscriber]:
    return session.execute(select(NewsletterSubscriber).where(NewsletterSubscriber.email == email)).scalar_one_or_none()


def _email(value: object) -> str:
    try:
        return normalise_email(value)
    except CartError as error:
        raise NewsletterError("invalid_email", error.message) from None


def subscribe(session: Session, email: str, source: str, now: datetime, *,
              consent_text: Optional[str] = None) -> SubscriptionResult:
    """Subscribe with the shopper's explicit consent (`consent_text`: the wording they agreed to)."""
    now = utc_naive(now)
    email = _email(email)
    source = " ".join(str(source or "").split())[:SOURCES_MAX]
    if not source:
        raise NewsletterError("missing_source", "Where the consent was given (source) must be recorded.")
    wording = (consent_text or DEFAULT_CONSENT_TEXT).replace("{shop}", shop_settings().name)[:500]
    row = _subscriber(session, email)
    if row is not None and row.status == "subscribed":
        return SubscriptionResult(email, "already_subscribed", True, unsubscribe_url(row.unsubscribe_token),
                                  f"{email} is already subscribed to our newsletter.")
    status = "resubscribed" if row is not None else "subscribed"
    if row is None:
        row = NewsletterSubscriber(email=email, unsubscribe_token=secrets.token_urlsafe(24), created_at=now)
        session.add(row)
    row.status = "subscribed"
    row.consented_at = now
    row.consent_source = source
    row.unsubscribed_at = None
    session.flush()
    session.add(NewsletterConsent(subscriber_id=row.id, action="subscribe", source=source, consent_text=wording,
                                  created_at=now))
    session.flush()
    return SubscriptionResult(email, status, True, unsubscribe_url(row.unsubscribe_token),
                              f"Thanks! {email} is subscribed to our newsletter. Every email has a link to "
                              "unsubscribe, or just tell me.")


def unsubscribe(session: Session, email_or_token: str, *, source: str = "request",
                now: Optional[datetime] = None) -> SubscriptionResult:
    """Unsubscribe by email address or unsubscribe token; the same friendly reply whether or not it was on the list."""
    now = utc_naive(now)
    value = str(email_or_token or "").strip()
    if "@" in value:
        email = _email(value)
        row = _subscriber(session, email)
    elif _TOKEN.match(value):
        row = session.execute(
            select(NewsletterSubscriber).where(NewsletterSubscriber.unsubscribe_token == value)
        ).scalar_one_or_none()
        email = row.email if row is not None else ""
    else:
        raise NewsletterError("invalid_request", "Please give the email address you subscribed with.")
    if row is None or row.status != "subscribed":
        return SubscriptionResult(email, "not_subscribed", False, None,
                                  "You're unsubscribed: you won't get our newsletter." if email else
                                  "That unsubscribe link isn't valid; tell me the email address instead.")
    row.status = "unsubscribed"
    row.unsubscribed_at = now
    session.add(NewsletterConsent(subscriber_id=row.id, action="unsubscribe",
                                  source=" ".join(source.split())[:SOURCES_MAX] or "request", consent_text="",
                                  created_at=now))
    session.flush()
    return SubscriptionResult(row.email, "unsubscribed", False, None,
                              "You're unsubscribed: you won't get our newsletter.")


def is_subscribed(session: Session, email: str) -> bool:
    try:
        email = _email(email)
    except NewsletterError:
        return False
    row = _subscriber(session, email)
    return row is not None and row.status == "subscribed"
