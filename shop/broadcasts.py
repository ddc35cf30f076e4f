"""Promotion and new-arrivals broadcasts to newsletter subscribers, personalised and sent at most once.

`python -m shop broadcast --kind promotion|new-arrivals` (see `run_broadcast`):

1. Recipients are the newsletter subscribers whose consent stands (`shop.newsletter`: status subscribed,
   with a recorded consent), re-checked just before each send, so an unsubscribe during a run is honoured.
2. Each message is personalised from the preferences stored on the customer with that email
   (`shop.recommendations`: clothing and shoe size, liked and disliked colours, favourite categories):
   products come only in variants in stock in their size and never in a colour they dislike; favourite
   categories and liked colours come first. A promotion offers products on sale plus the public codes
   running now (`shop.promotions.public_promotions`); new arrivals are products added in the last
   SHOP_NEW_ARRIVAL_DAYS days. A subscriber for whom nothing fits gets nothing (no filler mail).
3. Every subscriber gets an email over SMTP (`shop.mailer`) ending with their personal unsubscribe link,
   the one-button page `/newsletter/unsubscribe/<token>` (web/newsletter.py). A subscriber whose chat is
   open right now (a conversation tied to their email whose last event is younger than
   SHOP_CHAT_SESSION_MINUTES, asked from Rasa's tracker) also gets it in that chat: the intent
   EXTERNAL_broadcast is triggered there (`shop.rasa_client`) with the delivery's id, and the assistant's
   action_broadcast_message shows the stored message with the same unsubscribe link and button.
4. Every send is a row in `broadcast_deliveries` (broadcast, subscriber, channel), claimed *before* the
   send under a unique constraint. Re-running the same broadcast (same --key; default: kind and UTC day)
   skips what was sent, retries only sends that failed, and two runs at once never send twice. A run
   that died mid-send leaves its claim as `sending`: that one is reported, never retried, because a
   promotion sent twice is worse than one not sent.

| variable                  | default | meaning                                                        |
| ------------------------- | ------- | -------------------------------------------------------------- |
| SHOP_NEW_ARRIVAL_DAYS     | 30      | products added within this many days are new arrivals          |
| SHOP_BROADCAST_PRODUCTS   | 4       | products per broadcast message                                 |
| SHOP_CHAT_SESSION_MINUTES | 60      | a chat counts as open this long after its last event (Rasa's session_expiration_time) |

SMTP settings: shop/mailer.py; Rasa's HTTP API (RASA_URL, RASA_TOKEN): shop/rasa_client.py.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from sqlalchemy import (JSON, Column, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, exists, func,
                        select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from shop.carts import utc_naive
from shop.catalog import ProductSummary, format_price, summaries_for
from shop.db import session_scope
from shop.mailer import MailerError, MailerUnavailable, SmtpMailer
from shop.models import Base, Cart, Customer, Order, Product, Variant
from shop.newsletter import NewsletterSubscriber, unsubscribe_url
from shop.products import CLOTHING_SIZE_ORDER, normalise_color, normalise_size
from shop.promotions import public_promotions
from shop.rasa_client import latest_event_time, trigger_intent
from shop.recommendations import find_customer
from shop.settings import absolute_url, shop_settings
from shop.verification import VerificationSession

__all__ = [
    "BROADCAST_INTENT", "KINDS", "Broadcast", "BroadcastDelivery", "BroadcastError", "BroadcastMessage",
    "BroadcastReport", "ChatBroadcast", "add_broadcast_command", "broadcast_settings", "chat_broadcast",
    "cmd_broadcast", "compose_message", "consenting_subscribers", "default_key", "open_conversation",
    "pick_products", "run_broadcast",
]

KINDS = ("promotion", "new-arrivals")
BROADCAST_INTENT = "EXTERNAL_broadcast"  # its rule runs action_broadcast_message (actions/broadcasts.py)
CHANNEL_EMAIL, CHANNEL_CHAT = "email", "chat"
# At most this many of a subscriber's most recent conversations are asked about at Rasa: older ones
# are long closed, and each question is an HTTP call.
CONVERSATIONS_CHECKED = 3
KEY_MAX = 120
_SHOE_SIZES = (30, 50)  # EU numbers, as shop.recommendations reads them


class Broadcast(Base):
    """One broadcast; its key makes a re-run the same broadcast."""

    __tablename__ = "broadcasts"
    id = Column(Integer, primary_key=True)
    key = Column(String(KEY_MAX), nullable=False, unique=True)
    kind = Column(String(20), nullable=False)  # promotion, new-arrivals
    subject = Column(String(200), nullable=False)
    created_at = Column(DateTime, nullable=False)


class BroadcastDelivery(Base):
    """One message of a broadcast to one subscriber on one channel; the unique constraint is the
    guarantee against sending twice."""

    __tablename__ = "broadcast_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "subscriber_id", "channel", name="broadcast_delivery_once_per_channel"),
    )
    id = Column(Integer, primary_key=True)
    broadcast_id = Column(Integer, ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False, index=True)
    subscriber_id = Column(Integer, ForeignKey("newsletter_subscribers.id", ondelete="CASCADE"), nullable=False,
                           index=True)
    channel = Column(String(10), nullable=False)  # email, chat
    conversation_id = Column(String(255), nullable=True)  # chat only: where it was said
    status = Column(String(10), nullable=False)  # sending, sent, failed
    body = Column(Text, nullable=False, default="")  # the personalised text, as sent
    product_handles = Column(JSON, nullable=False, default=list)
    error = Column(String(300), nullable=False, default="")
    created_at = Column(DateTime, nullable=False)
    sent_at = Column(DateTime, nullable=True)


class BroadcastError(RuntimeError):
    """The broadcast cannot start or had to stop; str() says why and what to do."""


@dataclass(frozen=True)
class BroadcastSettings:
    new_arrival_days: int = 30
    products_per_message: int = 4
    chat_session_minutes: int = 60


def _whole_number(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def broadcast_settings() -> BroadcastSettings:
    """Read on each call, so the command and the tests see their own environment."""
    return BroadcastSettings(
        new_arrival_days=_whole_number("SHOP_NEW_ARRIVAL_DAYS", 30, 1, 365),
        products_per_message=_whole_number("SHOP_BROADCAST_PRODUCTS", 4, 1, 10),
        chat_session_minutes=_whole_number("SHOP_CHAT_SESSION_MINUTES", 60, 1, 24 * 60),
    )


# --------------------------------------------------------------------------------------------
# Who gets it
# --------------------------------------------------------------------------------------------

def consenting_subscribers(session: Session) -> List[NewsletterSubscriber]:
    """Subscribers whose consent stands: subscribed, with the time of their consent on record."""
    return list(session.execute(
        select(NewsletterSubscriber)
        .where(NewsletterSubscriber.status == "subscribed", NewsletterSubscriber.consented_at.is_not(None))
        .order_by(NewsletterSubscriber.id)
    ).scalars())


def _recent_conversations(session: Session, email: str) -> List[str]:
    """Conversation ids tied to this email in the shop's data, most recently active first: carts of the
    customer, conversations verified for the email, chat orders."""
    seen: Dict[str, datetime] = {}

    def note(rows) -> None:
        for conversation_id, moment in rows:
            if conversation_id and (conversation_id not in seen or moment > seen[conversation_id]):
                seen[conversation_id] = moment

    note(session.execute(
        select(Cart.session_id, Cart.updated_at).join(Customer, Customer.id == Cart.customer_id)
        .where(func.lower(Customer.email) == email)
    ).all())
    note(session.execute(
        select(VerificationSession.conversation_id, VerificationSession.updated_at)
        .where(func.lower(VerificationSession.verified_email) == email)
    ).all())
    note(session.execute(
        select(Order.conversation_id, Order.placed_at)
        .where(func.lower(Order.email) == email, Order.conversation_id.is_not(None))
    ).all())
    return [c for c, _moment in sorted(seen.items(), key=lambda item: item[1], reverse=True)]


def open_conversation(session: Session, email: str, now: datetime,
                      last_event: Callable[[str], Optional[datetime]] = latest_event_time,
                      session_minutes: Optional[int] = None) -> Optional[str]:
    """The subscriber's chat that is open right now (Rasa saw an event in it within the chat session
    length), or None. `last_event` asks Rasa's tracker; Rasa being down means no open chat."""
    minutes = session_minutes or broadcast_settings().chat_session_minutes
    since = utc_naive(now) - timedelta(minutes=minutes)
    for conversation_id in _recent_conversations(session, email.lower())[:CONVERSATIONS_CHECKED]:
        moment = last_event(conversation_id)
        if moment is not None and moment >= since:
            return conversation_id
    return None


# --------------------------------------------------------------------------------------------
# What it says
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preferences:
    """What a subscriber told the shop, as stored on their customer record (all optional)."""
    first_name: str = ""
    size: str = ""
    shoe_size: str = ""
    liked_colors: Tuple[str, ...] = ()
    disliked_colors: Tuple[str, ...] = ()
    favorite_categories: Tuple[str, ...] = ()

    @classmethod
    def of(cls, customer: Optional[Customer]) -> "Preferences":
        if customer is None:
            return cls()
        prefs = dict(customer.preferences or {})

        def colors(key: str) -> Tuple[str, ...]:
            return tuple(dict.fromkeys(normalise_color(c) for c in prefs.get(key) or [] if isinstance(c, str)))

        disliked = colors("disliked_colors")
        return cls(
            first_name=(customer.first_name or "").strip(),
            size=normalise_size(prefs.get("size")) if prefs.get("size") else "",
            shoe_size=normalise_size(prefs.get("shoe_size")) if prefs.get("shoe_size") else "",
            liked_colors=tuple(c for c in colors("liked_colors") if c not in disliked),
            disliked_colors=disliked,
            favorite_categories=tuple(c.lower() for c in prefs.get("favorite_categories") or [] if isinstance(c, str)),
        )

    def fits(self, variant: Variant) -> bool:
        """In stock, not in a disliked colour, and in their size when it is a size they gave us."""
        if variant.stock <= 0 or normalise_color(variant.color) in self.disliked_colors:
            return False
        size = normalise_size(variant.size)
        if size in CLOTHING_SIZE_ORDER:
            return not self.size or size == self.size
        if size.replace(".", "", 1).isdigit() and _SHOE_SIZES[0] <= float(size) <= _SHOE_SIZES[1]:
            return not self.shoe_size or size == self.shoe_size
        return True


@dataclass(frozen=True)
class Pick:
    product: ProductSummary
    reason: str  # one line of facts: why this product, for this subscriber


def _on_sale(variant: Variant) -> bool:
    return bool(variant.compare_at_price_cents and variant.compare_at_price_cents > variant.price_cents)


def _candidates(session: Session, kind: str, now: datetime, new_arrival_days: int) -> List[Product]:
    query = (select(Product).where(Product.published.is_(True))
             .options(selectinload(Product.variants), selectinload(Product.category)))
    if kind == "new-arrivals":
        since = now - timedelta(days=new_arrival_days)
        query = query.where(Product.created_at >= since).order_by(Product.created_at.desc(), Product.id)
    else:
        query = query.where(exists().where(
            Variant.product_id == Product.id, Variant.stock > 0, Variant.compare_at_price_cents > Variant.price_cents,
        )).order_by(Product.id)
    return list(session.execute(query).scalars())


def pick_products(session: Session, kind: str, prefs: Preferences, now: datetime, limit: int,
                  new_arrival_days: int) -> List[Pick]:
    """Up to `limit` products for one subscriber: only variants that fit them; favourite categories first,
    then a liked colour, then (new arrivals) the newest or (promotion) the biggest saving."""
    ranked = []
    for product in _candidates(session, kind, now, new_arrival_days):
        fitting = [v for v in product.variants if prefs.fits(v) and (kind != "promotion" or _on_sale(v))]
        if not fitting:
            continue
        category = product.category.name if product.category else ""
        favourite = category.lower() in prefs.favorite_categories
        liked = next((c for c in prefs.liked_colors if any(normalise_color(v.color) == c for v in fitting)), "")
        saving = max((v.compare_at_price_cents - v.price_cents for v in fitting if _on_sale(v)), default=0)
        order = -saving if kind == "promotion" else -product.created_at.timestamp()
        ranked.append(((not favourite, not liked, order, product.id), product, fitting, category, favourite, liked))
    ranked.sort(key=lambda row: row[0])
    chosen = ranked[:limit]
    allowed = {v.id for row in chosen for v in row[2]}
    summaries = summaries_for(session, [row[1].id for row in chosen], lambda v: v.id in allowed)
    picks = []
    for summary, (_key, product, fitting, category, favourite, liked) in zip(summaries, chosen):
        parts = [("New in " if kind == "new-arrivals" else "On sale in ") + (category or "the shop")]
        if favourite:
            parts[0] += ", one of your favourite categories"
        sizes = sorted({normalise_size(v.size) for v in fitting} & {prefs.size, prefs.shoe_size} - {""})
        if sizes:
            parts.append(f"in stock in your size {sizes[0]}")
        if liked:
            parts.append(f"available in {liked}, a colour you like")
        picks.append(Pick(summary, "; ".join(parts) + "."))
    return picks


@dataclass(frozen=True)
class BroadcastMessage:
    """One subscriber's personalised message; `body` is the plain text of email and chat alike."""
    email: str
    subject: str
    body: str
    product_handles: Tuple[str, ...]
    unsubscribe_url: str


def _price_line(summary: ProductSummary) -> str:
    symbol = shop_settings().currency_symbol
    price = format_price(summary.price_cents, symbol)
    if summary.compare_at_price_cents and summary.compare_at_price_cents > summary.price_cents:
        price += f" (was {format_price(summary.compare_at_price_cents, symbol)})"
    return price


def default_subject(kind: str) -> str:
    shop = shop_settings().name
    return f"New at {shop}: picked for you" if kind == "new-arrivals" else f"{shop} offers picked for you"


def compose_message(session: Session, subscriber: NewsletterSubscriber, kind: str, subject: str, now: datetime,
                    settings: Optional[BroadcastSettings] = None) -> Optional[BroadcastMessage]:
    """The subscriber's message, or None when nothing fits their preferences (then nothing is sent)."""
    settings = settings or broadcast_settings()
    prefs = Preferences.of(find_customer(session, subscriber.email))
    picks = pick_products(session, kind, prefs, now, settings.products_per_message, settings.new_arrival_days)
    codes = [p.text for p in public_promotions(session, now)] if kind == "promotion" else []
    if not picks and not codes:
        return None
    shop = shop_settings().name
    link = unsubscribe_url(subscriber.unsubscribe_token)
    lines = [f"Hi {prefs.first_name}," if prefs.first_name else "Hi,", ""]
    if picks:
        lines.append(f"New at {shop}, picked for you:" if kind == "new-arrivals" else
                     f"On sale at {shop}, picked for you:")
        for pick in picks:
            summary = pick.product
            lines += [f"- {summary.title} by {summary.brand}: {_price_line(summary)}", f"  {pick.reason}",
                      f"  {absolute_url(summary.url_path)}"]
        lines.append("")
    if codes:
        lines.append("Codes you can use now:")
        lines += [f"- {code}" for code in codes]
        lines.append("")
    lines += [f"You get this because you subscribed to the {shop} newsletter.", f"Unsubscribe: {link}"]
    return BroadcastMessage(subscriber.email, subject, "\n".join(lines) + "\n",
                            tuple(p.product.handle for p in picks), link)


# --------------------------------------------------------------------------------------------
# Sending once
# --------------------------------------------------------------------------------------------

def default_key(kind: str, now: datetime) -> str:
    """One broadcast of a kind per UTC day unless the caller names another (--key)."""
    return f"{kind}-{utc_naive(now):%Y-%m-%d}"


def _broadcast(session: Session, key: str, kind: str, subject: str, now: datetime) -> Broadcast:
    row = session.execute(select(Broadcast).where(Broadcast.key == key)).scalar_one_or_none()
    if row is not None:
        if row.kind != kind:
            raise BroadcastError(f"the broadcast {key!r} is a {row.kind} broadcast, not {kind}; choose another --key")
        return row
    row = Broadcast(key=key, kind=kind, subject=subject, created_at=now)
    session.add(row)
    session.flush()
    return row


def _claim(engine: Engine, broadcast_id: int, subscriber_id: int, channel: str, message: BroadcastMessage,
           now: datetime, conversation_id: Optional[str] = None) -> Tuple[Optional[int], str]:
    """Take the right to send this message: (delivery id, "") or (None, why not). Committed before the send."""
    try:
        with session_scope(engine) as session:
            status = session.execute(
                select(NewsletterSubscriber.status).where(NewsletterSubscriber.id == subscriber_id)
            ).scalar_one_or_none()
            if status != "subscribed":
                return None, "unsubscribed"
            existing = session.execute(select(BroadcastDelivery).where(
                BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.subscriber_id == subscriber_id,
                BroadcastDelivery.channel == channel,
            )).scalar_one_or_none()
            if existing is None:
                row = BroadcastDelivery(broadcast_id=broadcast_id, subscriber_id=subscriber_id, channel=channel,
                                        conversation_id=conversation_id, status="sending", body=message.body,
                                        product_handles=list(message.product_handles), created_at=now)
                session.add(row)
                session.flush()
                return row.id, ""
            if existing.status != "failed":
                return None, existing.status
            # Only the run whose UPDATE still finds it failed retries it.
            retried = session.execute(
                update(BroadcastDelivery).where(BroadcastDelivery.id == existing.id, BroadcastDelivery.status == "failed")
                .values(status="sending", error="", body=message.body, product_handles=list(message.product_handles),
                        conversation_id=conversation_id)
            ).rowcount
            return (existing.id, "") if retried else (None, "sending")
    except IntegrityError:  # another run claimed it between our read and our insert
        return None, "sending"


def _finish(engine: Engine, delivery_id: int, now: datetime, error: str = "") -> None:
    with session_scope(engine) as session:
        session.execute(update(BroadcastDelivery).where(BroadcastDelivery.id == delivery_id).values(
            status="failed" if error else "sent", sent_at=None if error else now, error=error[:300]))


@dataclass
class BroadcastReport:
    key: str
    kind: str
    dry_run: bool
    recipients: int = 0  # consenting subscribers looked at
    emailed: int = 0
    chatted: int = 0
    already_sent: int = 0  # messages skipped because an earlier run sent them
    nothing_fits: int = 0  # subscribers with no product fitting their preferences
    unsubscribed: int = 0  # unsubscribed while the run was going
    interrupted: int = 0  # claims left `sending` by a run that died mid-send: never retried
    failed: List[Tuple[str, str, str]] = field(default_factory=list)  # (email, channel, why)
    planned: List[Tuple[str, bool, BroadcastMessage]] = field(default_factory=list)  # dry run: (email, chat?, msg)

    def lines(self) -> List[str]:
        if self.dry_run:
            out = [f"Dry run of {self.kind} broadcast {self.key}: nothing sent, nothing recorded.",
                   f"{len(self.planned)} of {self.recipients} consenting subscribers would get it "
                   f"({sum(1 for _e, chat, _m in self.planned if chat)} also in their open chat); "
                   f"{self.nothing_fits} have nothing fitting their preferences."]
            for email, chat, message in self.planned:
                out.append(f"  {email}{' (+ chat)' if chat else ''}: {', '.join(message.product_handles) or 'codes only'}")
            return out
        out = [f"{self.kind.capitalize()} broadcast {self.key}: {self.emailed} emailed, {self.chatted} said in an "
               f"open chat, {self.already_sent} already sent earlier, {self.nothing_fits} with nothing fitting "
               f"their preferences (of {self.recipients} consenting subscribers)."]
        if self.unsubscribed:
            out.append(f"{self.unsubscribed} unsubscribed during the run and were skipped.")
        if self.interrupted:
            out.append(f"{self.interrupted} messages were being sent when an earlier run stopped; they are not "
                       "retried, so nobody gets a message twice.")
        for email, channel, why in self.failed:
            out.append(f"  not sent by {channel} to {email}: {why}")
        if self.failed:
            out.append("Run the same command again to retry the messages that were not sent.")
        return out


def _skip(report: BroadcastReport, why: str) -> None:
    if why == "sent":
        report.already_sent += 1
    elif why == "unsubscribed":
        report.unsubscribed += 1
    else:
        report.interrupted += 1


def _send_email(engine: Engine, mailer: SmtpMailer, broadcast_id: int, subscriber_id: int,
                message: BroadcastMessage, now: datetime, report: BroadcastReport) -> bool:
    """Email one message; False when the subscriber unsubscribed meanwhile (then no chat either)."""
    delivery_id, why = _claim(engine, broadcast_id, subscriber_id, CHANNEL_EMAIL, message, now)
    if delivery_id is None:
        _skip(report, why)
        return why != "unsubscribed"
    try:
        mailer.send(message.email, message.subject, message.body)
    except MailerError as error:
        _finish(engine, delivery_id, now, error=str(error))
        report.failed.append((message.email, CHANNEL_EMAIL, str(error)))
        if isinstance(error, MailerUnavailable):
            raise BroadcastError(f"the mail server stopped answering ({error}); the rest was not sent. "
                                 "Run the same command again once it is back.") from error
        return True
    _finish(engine, delivery_id, now)
    report.emailed += 1
    return True


def _send_chat(engine: Engine, broadcast_id: int, subscriber_id: int, message: BroadcastMessage,
               conversation_id: str, now: datetime, report: BroadcastReport) -> None:
    delivery_id, why = _claim(engine, broadcast_id, subscriber_id, CHANNEL_CHAT, message, now, conversation_id)
    if delivery_id is None:
        _skip(report, why)
        return
    if trigger_intent(conversation_id, BROADCAST_INTENT, {"broadcast_delivery": str(delivery_id)}):
        _finish(engine, delivery_id, now)
        report.chatted += 1
        return
    _finish(engine, delivery_id, now, error="Rasa did not accept the message (see the log)")
    report.failed.append((message.email, CHANNEL_CHAT, "Rasa did not accept the message (see the log)"))


def _messages(engine: Engine, kind: str, subject: str, now: datetime, report: BroadcastReport,
              settings: BroadcastSettings) -> Iterator[Tuple[int, BroadcastMessage, Optional[str]]]:
    """(subscriber id, message, open conversation) per subscriber with something fitting, one short
    read-only unit of work each, so sends never hold a database transaction open."""
    with session_scope(engine) as session:
        subscriber_ids = [s.id for s in consenting_subscribers(session)]
    report.recipients = len(subscriber_ids)
    for subscriber_id in subscriber_ids:
        with session_scope(engine) as session:
            subscriber = session.get(NewsletterSubscriber, subscriber_id)
            message = compose_message(session, subscriber, kind, subject, now, settings)
            if message is None:
                report.nothing_fits += 1
                continue
            conversation = open_conversation(session, subscriber.email, now,
                                             session_minutes=settings.chat_session_minutes)
        yield subscriber_id, message, conversation


def run_broadcast(engine: Engine, kind: str, *, subject: Optional[str] = None, key: Optional[str] = None,
                  dry_run: bool = False, now: Optional[datetime] = None, mailer: Optional[SmtpMailer] = None,
                  new_arrival_days: Optional[int] = None) -> BroadcastReport:
    """Send (or with `dry_run` only plan) a broadcast; see the module docstring for who gets what, once."""
    if kind not in KINDS:
        raise BroadcastError(f"unknown broadcast kind {kind!r}; use one of {', '.join(KINDS)}")
    now = utc_naive(now)
    settings = broadcast_settings()
    if new_arrival_days is not None:
        settings = BroadcastSettings(new_arrival_days, settings.products_per_message, settings.chat_session_minutes)
    subject = " ".join((subject or default_subject(kind)).split())[:200]
    key = " ".join((key or default_key(kind, now)).split())[:KEY_MAX]
    report = BroadcastReport(key=key, kind=kind, dry_run=dry_run)
    if dry_run:
        for _subscriber_id, message, conversation in _messages(engine, kind, subject, now, report, settings):
            report.planned.append((message.email, conversation is not None, message))
        return report
    mailer = mailer or SmtpMailer()
    try:
        mailer.check()  # fail before anything is recorded when the mail server is not there
    except MailerError as error:
        raise BroadcastError(f"cannot send email: {error}. Nothing was sent.") from error
    try:
        with session_scope(engine) as session:
            broadcast_id = _broadcast(session, key, kind, subject, now).id
    except IntegrityError:  # a run started at the same moment created it first
        with session_scope(engine) as session:
            broadcast_id = _broadcast(session, key, kind, subject, now).id
    for subscriber_id, message, conversation in _messages(engine, kind, subject, now, report, settings):
        still_subscribed = _send_email(engine, mailer, broadcast_id, subscriber_id, message, now, report)
        if still_subscribed and conversation is not None:
            _send_chat(engine, broadcast_id, subscriber_id, message, conversation, now, report)
    return report


# --------------------------------------------------------------------------------------------
# In the chat
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatBroadcast:
    email: str
    body: str
    product_handles: Tuple[str, ...]
    unsubscribe_url: str


def chat_broadcast(session: Session, delivery_id: object, conversation_id: str) -> Optional[ChatBroadcast]:
    """The message of a chat delivery, only in the conversation it was sent to (a typed
    /EXTERNAL_broadcast in another chat shows nobody else's message) and only while subscribed."""
    try:
        number = int(str(delivery_id))
    except ValueError:
        return None
    row = session.execute(
        select(BroadcastDelivery, NewsletterSubscriber)
        .join(NewsletterSubscriber, NewsletterSubscriber.id == BroadcastDelivery.subscriber_id)
        .where(BroadcastDelivery.id == number, BroadcastDelivery.channel == CHANNEL_CHAT,
               BroadcastDelivery.conversation_id == conversation_id,
               NewsletterSubscriber.status == "subscribed")
    ).first()
    if row is None:
        return None
    delivery, subscriber = row
    return ChatBroadcast(subscriber.email, delivery.body, tuple(delivery.product_handles or ()),
                         unsubscribe_url(subscriber.unsubscribe_token))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_broadcast_command(commands, common) -> None:
    """The `broadcast` subcommand of shop/cli.py."""
    import argparse

    parser = commands.add_parser(
        "broadcast", parents=[common], help="send a promotion or new-arrivals message to consenting subscribers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Email every newsletter subscriber who consented a message personalised by their stored preferences\n"
            "(sizes, colours, favourite categories), with their unsubscribe link; subscribers with an open chat\n"
            "also get it there. Each message is recorded, so running the same broadcast again sends only what\n"
            "was not sent yet. Settings: SMTP_*, RASA_URL, SHOP_NEW_ARRIVAL_DAYS, SHOP_BROADCAST_PRODUCTS."
        ),
    )
    parser.add_argument("--kind", choices=KINDS, required=True, help="what the message is about")
    parser.add_argument("--subject", help="the email subject (default: one per kind, with the shop's name)")
    parser.add_argument("--key", help="names the broadcast; the same key is the same broadcast "
                                      "(default: kind and today's UTC date, e.g. promotion-2024-06-15)")
    parser.add_argument("--days", type=int, metavar="N",
                        help="new arrivals: products added in the last N days (default: SHOP_NEW_ARRIVAL_DAYS or 30)")
    parser.add_argument("--dry-run", action="store_true", help="show who would get what; send and record nothing")


def cmd_broadcast(args) -> int:
    from shop.db import database_url, make_engine

    if args.days is not None and not 1 <= args.days <= 365:
        print("broadcast: --days must be between 1 and 365", file=sys.stderr)
        return 1
    engine = make_engine(getattr(args, "database_url", None) or database_url())
    try:
        report = run_broadcast(engine, args.kind, subject=args.subject, key=args.key, dry_run=args.dry_run,
                               new_arrival_days=args.days)
    except BroadcastError as error:
        print(f"broadcast: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for line in report.lines():
        print(line)
    return 1 if report.failed else 0
