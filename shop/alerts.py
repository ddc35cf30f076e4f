"""Back-in-stock and price-drop alerts: "tell me when the blue one in size M is back", "let me know if it
gets cheaper".

`subscribe` records what the shopper asked for (one variant, the kind, the price at that moment, the chat
and, only when the shopper typed it asking to be emailed, an email address with that consent). The
background worker (`shop.worker`) calls `run_due_alerts`, which finds the alerts whose condition now holds
(back_in_stock: the variant has stock and is sold; price_drop: it costs less than when subscribed), and
notifies each ONCE:

* in the chat, through Rasa's trigger_intent API (intent EXTERNAL_stock_alert; actions/recovery.py words
  it), when the conversation was active within SHOP_ALERT_CHAT_ACTIVE_MINUTES (default 30);
* else by email (shop.mailer) when the shopper consented to it;
* else in the chat anyway: it is the only channel we have, and the message waits in the conversation.

A failed delivery (Rasa or the mail server down) leaves the alert waiting and tries again after
SHOP_WORKER_RETRY_SECONDS. Alerts are claimed with a conditional UPDATE before sending, like cart reminders
(shop.reminders), so several workers never notify twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, List, Optional, Sequence

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, String, and_, func, or_, select, update
from sqlalchemy.orm import Session

from shop.carts import CartError, normalise_email, utc_naive
from shop.mailer import MailerError
from shop.models import Base, Cart, Product, Variant
from shop.policy import format_money
from shop.products import normalise_size
from shop.reminders import BATCH_SIZE, CLAIM_LEASE, LastActivity, Sender, setting
from shop.settings import absolute_url, shop_settings

log = logging.getLogger(__name__)

__all__ = [
    "ALERT_KINDS", "STOCK_ALERT_INTENT", "AlertNotice", "AlertSettings", "EmailSender", "StockAlert",
    "SubscribeResult", "VariantChoice", "alert_notice", "alert_settings", "choose_variant", "run_due_alerts",
    "subscribe",
]

STOCK_ALERT_INTENT = "EXTERNAL_stock_alert"
ALERT_KINDS = ("back_in_stock", "price_drop")
EMAIL_CONSENT_TEXT = "The shopper typed this address in the chat asking to be emailed about this item."

# send_email(to, subject, body): delivers or raises shop.mailer.MailerError (SmtpMailer().send)
EmailSender = Callable[[str, str, str], Any]


@dataclass(frozen=True)
class AlertSettings:
    chat_active_within: timedelta  # a conversation this recent gets the alert in the chat
    retry_after: timedelta


def alert_settings() -> AlertSettings:
    return AlertSettings(
        chat_active_within=timedelta(minutes=setting("SHOP_ALERT_CHAT_ACTIVE_MINUTES", 30)),
        retry_after=timedelta(seconds=setting("SHOP_WORKER_RETRY_SECONDS", 60)),
    )


class StockAlert(Base):
    """A shopper's wish to hear when one variant is back in stock or cheaper."""

    __tablename__ = "stock_alerts"
    id = Column(Integer, primary_key=True)
    variant_id = Column(Integer, ForeignKey("variants.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = Column(String(20), nullable=False)  # back_in_stock, price_drop
    conversation_id = Column(String(255), nullable=True, index=True)
    email = Column(String(255), nullable=False, default="")  # kept only with consent
    email_consent = Column(Boolean, nullable=False, default=False)
    consent_text = Column(String(255), nullable=False, default="")
    price_cents_at_subscription = Column(Integer, nullable=False)
    status = Column(String(20), nullable=False, default="waiting", index=True)  # waiting, notified
    attempts = Column(Integer, nullable=False, default=0)  # failed deliveries
    next_attempt_at = Column(DateTime, nullable=True)  # None: whenever the condition holds
    notified_at = Column(DateTime, nullable=True, index=True)
    channel = Column(String(10), nullable=False, default="")  # chat or email, once notified
    notified_price_cents = Column(Integer, nullable=True)  # the price when notified (the drop's new price)
    created_at = Column(DateTime, nullable=False)


# --------------------------------------------------------------------------------------------
# Subscribing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VariantChoice:
    variant: Optional[Variant]  # None: ask which one (see `options`) or nothing to watch (see `reason`)
    reason: str  # "" | in_stock (nothing to wait for) | ambiguous | no_such_variant
    options: Sequence[str] = ()  # labels to choose from when ambiguous


def _fits(variant: Variant, size: Optional[str], color: Optional[str]) -> bool:
    if size and normalise_size(variant.size).lower() != normalise_size(size).lower():
        return False
    return not color or (variant.color or "").lower() == color.lower()


def choose_variant(product: Product, kind: str, size: Optional[str] = None,
                   color: Optional[str] = None) -> VariantChoice:
    """The variant an alert should watch, from the size and colour the shopper named.

    back_in_stock watches a sold-out variant: when only one of the fitting variants is sold out, that one;
    when all fitting variants are in stock there is nothing to wait for. price_drop watches the cheapest
    fitting variant (a product's variants usually share one price)."""
    fitting = [v for v in product.variants if _fits(v, size, color)]
    if not fitting:
        return VariantChoice(None, "no_such_variant")
    if kind == "price_drop":
        return VariantChoice(min(fitting, key=lambda v: (v.price_cents, v.id)), "")
    sold_out = [v for v in fitting if v.stock <= 0 or not product.published]
    if not sold_out:
        return VariantChoice(None, "in_stock", tuple(v.label for v in fitting))
    if len(sold_out) == 1:
        return VariantChoice(sold_out[0], "")
    return VariantChoice(None, "ambiguous", tuple(v.label for v in sold_out))


@dataclass(frozen=True)
class SubscribeResult:
    alert: Optional[StockAlert]
    created: bool  # False: the same alert already existed (or nothing was recorded)
    reason: str  # "" | unknown_kind | unknown_variant | in_stock | no_channel | invalid_email


def subscribe(session: Session, *, variant_id: int, kind: str, now: datetime, conversation_id: Optional[str] = None,
              email: Optional[str] = None, email_consent: bool = False) -> SubscribeResult:
    """Record an alert (idempotent per variant, kind and chat/email). An email is stored only with
    `email_consent` (the shopper asked to be emailed). Refusals change nothing: see SubscribeResult.reason."""
    now = utc_naive(now)
    if kind not in ALERT_KINDS:
        return SubscribeResult(None, False, "unknown_kind")
    variant = session.get(Variant, variant_id)
    if variant is None:
        return SubscribeResult(None, False, "unknown_variant")
    if kind == "back_in_stock" and variant.stock > 0 and variant.product.published:
        return SubscribeResult(None, False, "in_stock")
    address = ""
    if email and email_consent:
        try:
            address = normalise_email(email)
        except CartError:
            return SubscribeResult(None, False, "invalid_email")
    conversation_id = (conversation_id or "").strip()[:255] or None
    if conversation_id is None and not address:
        return SubscribeResult(None, False, "no_channel")
    same = [StockAlert.variant_id == variant.id, StockAlert.kind == kind, StockAlert.status == "waiting"]
    same.append(StockAlert.conversation_id == conversation_id if conversation_id else StockAlert.email == address)
    existing = session.execute(select(StockAlert).where(*same).limit(1)).scalar_one_or_none()
    if existing is not None:
        if address and not existing.email_consent:  # asked again, now with an email: keep it
            existing.email, existing.email_consent, existing.consent_text = address, True, EMAIL_CONSENT_TEXT
            session.flush()
        return SubscribeResult(existing, False, "")
    alert = StockAlert(variant_id=variant.id, kind=kind, conversation_id=conversation_id, email=address,
                       email_consent=bool(address), consent_text=EMAIL_CONSENT_TEXT if address else "",
                       price_cents_at_subscription=variant.price_cents, status="waiting", attempts=0,
                       created_at=now)
    session.add(alert)
    session.flush()
    return SubscribeResult(alert, True, "")


# --------------------------------------------------------------------------------------------
# The notice (the same words in the chat and in the email)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertNotice:
    alert_id: int
    kind: str
    product_handle: str
    item: str  # "Harbor Denim Jacket (blue / M)"
    color: str
    size: str
    text: str
    url: str


def alert_notice(session: Session, alert_id: object) -> Optional[AlertNotice]:
    """What to tell the shopper about this alert, at today's price and stock; None for an unknown id."""
    try:
        alert = session.get(StockAlert, int(alert_id))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if alert is None:
        return None
    variant = session.get(Variant, alert.variant_id)
    product = variant.product
    label = variant.label
    item = f"{product.title} ({label})" if label != "Default" else product.title
    url = absolute_url(f"/products/{product.handle}")
    price = format_money(variant.price_cents)
    if alert.kind == "price_drop":
        text = (f"Good news: {item} is now {price} (it was {format_money(alert.price_cents_at_subscription)} "
                f"when you asked me to watch it).")
    else:
        text = f"Good news: {item} is back in stock, at {price}."
    return AlertNotice(alert.id, alert.kind, product.handle, item, variant.color, variant.size, text, url)


# --------------------------------------------------------------------------------------------
# The worker's job
# --------------------------------------------------------------------------------------------

def _condition_holds():
    """SQL for "this alert's news is true now"."""
    back = and_(StockAlert.kind == "back_in_stock", Variant.stock > 0, Product.published.is_(True))
    cheaper = and_(StockAlert.kind == "price_drop", Variant.price_cents < StockAlert.price_cents_at_subscription)
    return or_(back, cheaper)


def _last_seen(session: Session, alert: StockAlert, last_activity: Optional[LastActivity]) -> Optional[datetime]:
    """The conversation's latest sign of life: Rasa's latest event when we can ask, the cart's last change,
    the moment the alert was asked for."""
    moments: List[Optional[datetime]] = [alert.created_at, session.execute(
        select(func.max(Cart.updated_at)).where(Cart.session_id == alert.conversation_id)).scalar_one()]
    if last_activity is not None:
        moments.append(last_activity(alert.conversation_id))
    return max(moment for moment in moments if moment is not None)


def _claim(session: Session, alert_id: int, now: datetime) -> bool:
    claimed = session.execute(
        update(StockAlert).where(StockAlert.id == alert_id, StockAlert.status == "waiting",
                                 or_(StockAlert.next_attempt_at.is_(None), StockAlert.next_attempt_at <= now))
        .values(next_attempt_at=now + CLAIM_LEASE).execution_options(synchronize_session="fetch")
    ).rowcount == 1
    session.commit()  # visible to other workers before anything is sent; no lock held while sending
    return claimed


def _notify(session: Session, alert: StockAlert, now: datetime, send_chat: Sender, send_email: EmailSender,
            last_activity: Optional[LastActivity], settings: AlertSettings) -> bool:
    session.refresh(alert)
    variant = session.get(Variant, alert.variant_id)
    session.refresh(variant)
    still_true = (variant.price_cents < alert.price_cents_at_subscription if alert.kind == "price_drop"
                  else variant.stock > 0 and variant.product.published)
    if not still_true:  # sold out or repriced again since the query: wait for the next change
        alert.next_attempt_at = None
        session.commit()
        return False
    in_chat = alert.conversation_id is not None and (
        not alert.email_consent
        or _last_seen(session, alert, last_activity) >= now - settings.chat_active_within)
    notice = alert_notice(session, alert.id)
    if in_chat:
        delivered = send_chat(alert.conversation_id, STOCK_ALERT_INTENT, {"stock_alert_id": str(alert.id)})
    else:
        subject = "Back in stock: " if alert.kind == "back_in_stock" else "Price drop: "
        body = (f"Hello,\n\n{notice.text}\n\n{notice.url}\n\nYou asked us to tell you once about this item; this "
                f"is the only email about it.\n\n{shop_settings().name}\n")
        try:
            send_email(alert.email, subject + notice.item, body)
            delivered = True
        except MailerError as error:
            log.warning("stock alert %s not emailed: %s", alert.id, error)
            delivered = False
    if not delivered:
        alert.attempts += 1
        alert.next_attempt_at = now + settings.retry_after
        session.commit()
        return False
    alert.status = "notified"
    alert.notified_at = now
    alert.channel = "chat" if in_chat else "email"
    alert.notified_price_cents = variant.price_cents
    session.commit()
    log.info("stock alert %s sent by %s", alert.id, alert.channel)
    return True


def run_due_alerts(session: Session, now: datetime, send_chat: Sender, send_email: EmailSender, *,
                   last_activity: Optional[LastActivity] = None, settings: Optional[AlertSettings] = None) -> int:
    """Notify every waiting alert whose condition holds at `now`; returns how many were notified.
    Commits after each step of each alert (see the module doc), so pass a session of its own."""
    settings = settings or alert_settings()
    now = utc_naive(now)
    due = session.execute(
        select(StockAlert.id).join(Variant, Variant.id == StockAlert.variant_id)
        .join(Product, Product.id == Variant.product_id)
        .where(StockAlert.status == "waiting", _condition_holds(),
               or_(StockAlert.next_attempt_at.is_(None), StockAlert.next_attempt_at <= now))
        .order_by(StockAlert.id).limit(BATCH_SIZE)
    ).scalars().all()
    notified = 0
    for alert_id in due:
        if _claim(session, alert_id, now):
            notified += _notify(session, session.get(StockAlert, alert_id), now, send_chat, send_email,
                                last_activity, settings)
    return notified
