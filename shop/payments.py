"""Payments: a provider interface, the default sandbox gateway, and the shop's webhook handling.

The flow (like a hosted-checkout gateway in test mode):

1. `provider.create_session(order, success_url, cancel_url)` for a pending_payment order -> a
   `PaymentSession(id, url)`; the shopper opens `url` (the hosted payment page, web/payments.py).
2. The shopper submits a card on the hosted page (`SandboxPaymentProvider.submit_card`). Test mode:
   4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined, any other number is not accepted.
   The gateway then calls the shop's webhook URL with a JSON event, `payment.succeeded` or
   `payment.failed`, signed with HMAC-SHA256 (header `Sandbox-Signature: t=<unix time>,v1=<hex>` over
   "<t>.<body>", secret PAYMENT_WEBHOOK_SECRET).
3. The shop's webhook receiver checks the signature and the time (`verify_webhook`: a forged event or one
   signed more than 5 minutes ago is rejected) and calls `handle_payment_event`.

`handle_payment_event` is idempotent (a replayed or repeated event changes nothing) and, for a success:
order pending_payment -> paid; stock taken exactly once with a conditional UPDATE
(`stock = stock - n WHERE stock >= n`, never below zero, safe under concurrency: of two payments for the
last unit only one gets it); the discount code's use counted; the cart checked_out (lines the shopper added
after placing the order move to a fresh open cart). If the stock ran out meanwhile, the order is cancelled
and the full amount refunded (a pending Refund row; payment session status "refunded"). A declined or
abandoned payment leaves the order pending_payment and the cart as it was.

Card numbers are never stored or logged: only the brand and the last four digits are kept.

Settings (environment, read when a provider is created):

| variable                      | default                                      |
| ----------------------------- | -------------------------------------------- |
| PAYMENT_WEBHOOK_SECRET        | a fixed development secret (change it!)      |
| PAYMENT_WEBHOOK_URL           | SHOP_PUBLIC_URL + /webhooks/payments         |
| PAYMENT_SESSION_TTL_MINUTES   | 60                                           |
"""
from __future__ import annotations

import abc
import calendar
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Text, event as sa_event, select, update
from sqlalchemy.orm import Session, object_session

from shop.carts import MAX_LINE_QUANTITY, utc_naive
from shop.checkout import CheckoutOrder
from shop.models import Base, Cart, CartItem, DiscountCode, Order, Refund, Variant
from shop.orders import STATUS_TEXT, transition
from shop.policy import format_money, refund_timing_text
from shop.settings import shop_settings

log = logging.getLogger(__name__)

__all__ = [
    "DECLINED_CARD", "DEV_WEBHOOK_SECRET", "SIGNATURE_HEADER", "SUCCESS_CARD", "WEBHOOK_TOLERANCE", "CardAttempt",
    "HostedPage", "PaymentError", "PaymentEvent", "PaymentEventRecord", "PaymentOutcome", "PaymentProvider",
    "PaymentSession", "PaymentSessionRecord", "SandboxPaymentProvider", "WebhookError", "handle_payment_event",
    "webhook_secret",
]

SIGNATURE_HEADER = "Sandbox-Signature"
WEBHOOK_TOLERANCE = timedelta(minutes=5)
DEV_WEBHOOK_SECRET = "whsec_sandbox_development_only"
SUCCESS_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
DECLINE_MESSAGE = "Your card was declined. No money was taken; you can try another card."
NOT_ACCEPTED_MESSAGE = ("Card not accepted in test mode. Use 4242 4242 4242 4242 for a successful payment "
                        "or 4000 0000 0000 0002 to see a declined one.")
SESSION_ID_PATTERN = re.compile(r"^ps_test_[A-Za-z0-9_-]{20,60}$")


def webhook_secret() -> str:
    return os.environ.get("PAYMENT_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET


def _epoch(moment: datetime) -> int:
    return calendar.timegm(utc_naive(moment).utctimetuple())


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

class PaymentSessionRecord(Base):
    """One hosted payment session (the sandbox gateway's side). No card number, ever."""

    __tablename__ = "payment_sessions"
    id = Column(String(80), primary_key=True)
    provider = Column(String(20), nullable=False, default="sandbox")
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    status = Column(String(20), nullable=False, default="open")  # open, succeeded, refunded
    amount_cents = Column(Integer, nullable=False)  # the order total when created; the amount charged once paid
    currency = Column(String(3), nullable=False, default="usd")
    success_url = Column(String(1000), nullable=False)
    cancel_url = Column(String(1000), nullable=False)
    created_at = Column(DateTime, nullable=False)
    expires_at = Column(DateTime, nullable=False)
    completed_at = Column(DateTime, nullable=True)
    attempts = Column(Integer, nullable=False, default=0)  # declined attempts
    last_failure = Column(String(255), nullable=False, default="")
    card_brand = Column(String(30), nullable=False, default="")
    card_last4 = Column(String(4), nullable=False, default="")
    pending_event = Column(Text, nullable=True)  # the last event's JSON until the webhook accepted it
    delivered_at = Column(DateTime, nullable=True)


class PaymentEventRecord(Base):
    """Every webhook event the shop processed, by event id: a replayed event is recognised."""

    __tablename__ = "payment_events"
    id = Column(String(80), primary_key=True)
    type = Column(String(40), nullable=False)
    payment_session_id = Column(String(80), nullable=True, index=True)
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=True, index=True)
    outcome = Column(String(30), nullable=False)
    received_at = Column(DateTime, nullable=False)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

class PaymentError(Exception):
    """A payment request that cannot be done; `message` is shopper-facing."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class WebhookError(PaymentError):
    """A webhook call that is not a genuine, fresh event (bad_signature, missing_signature, too_old, malformed)."""


@dataclass(frozen=True)
class PaymentSession:
    id: str
    url: str
    order_number: str
    amount_cents: int
    expires_at: datetime


EVENT_TYPES = ("payment.succeeded", "payment.failed")


@dataclass(frozen=True)
class PaymentEvent:
    id: str
    type: str  # payment.succeeded | payment.failed
    created: int  # unix seconds
    payment_session_id: str
    order_number: str
    amount_cents: int
    currency: str = "usd"
    card_brand: str = ""
    card_last4: str = ""
    failure_message: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> "PaymentEvent":
        if not isinstance(data, dict):
            raise WebhookError("malformed", "the event is not a JSON object")
        try:
            event = cls(
                id=str(data["id"]), type=str(data["type"]), created=int(data["created"]),
                payment_session_id=str(data["payment_session_id"]), order_number=str(data["order_number"]),
                amount_cents=int(data["amount_cents"]), currency=str(data.get("currency", "usd")),
                card_brand=str(data.get("card_brand", "")), card_last4=str(data.get("card_last4", "")),
                failure_message=str(data.get("failure_message", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookError("malformed", f"the event lacks a valid field ({exc})") from None
        if event.type not in EVENT_TYPES or not event.id or len(event.id) > 80:
            raise WebhookError("malformed", f"unknown event type {event.type!r}")
        if event.card_last4 and not re.fullmatch(r"\d{4}", event.card_last4):
            raise WebhookError("malformed", "card_last4 must be four digits")
        return event


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    value = headers.get(name)  # aiohttp's headers are case-insensitive already
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_signed(secret: str, headers: Mapping[str, str], body: bytes, now: Optional[datetime] = None,
                  tolerance: timedelta = WEBHOOK_TOLERANCE) -> PaymentEvent:
    """The event in `body` when the signature header is genuine and fresh; WebhookError otherwise."""
    raw = _header(headers, SIGNATURE_HEADER)
    if not raw:
        raise WebhookError("missing_signature", f"the {SIGNATURE_HEADER} header is missing")
    timestamp, candidates = None, []
    for part in raw.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookError("bad_signature", "the signature header is malformed")
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookError("bad_signature", "the signature does not match")
    age = _epoch(utc_naive(now)) - timestamp
    if age > tolerance.total_seconds():
        raise WebhookError("too_old", f"the event was signed {age} seconds ago (older than "
                                      f"{int(tolerance.total_seconds())} seconds): a replay?")
    if age < -tolerance.total_seconds():
        raise WebhookError("too_old", "the event is signed with a time in the future")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookError("malformed", "the body is not JSON") from None
    return PaymentEvent.from_dict(data)


# --------------------------------------------------------------------------------------------
# The provider interface
# --------------------------------------------------------------------------------------------

class PaymentProvider(abc.ABC):
    """What the shop needs from a payment gateway (the sandbox below; a real gateway adapter alike)."""

    name = "provider"

    @abc.abstractmethod
    def create_session(self, order: Order, success_url: Optional[str] = None, cancel_url: Optional[str] = None,
                       *, now: Optional[datetime] = None) -> PaymentSession:
        """A hosted payment session for a pending_payment order (PaymentError otherwise)."""

    @abc.abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, *,
                       now: Optional[datetime] = None) -> PaymentEvent:
        """The event of a genuine, fresh webhook call; WebhookError for a forged, malformed or old one."""


@dataclass(frozen=True)
class PageLine:
    label: str
    quantity: int
    total_cents: int


@dataclass(frozen=True)
class HostedPage:
    state: str  # open | paid | expired | not_payable | refunded | missing
    payment_session_id: str
    message: str = ""
    order_number: str = ""
    lines: Tuple[PageLine, ...] = ()
    subtotal_cents: int = 0
    discount_cents: int = 0
    shipping_cents: int = 0
    tax_cents: int = 0
    total_cents: int = 0
    currency: str = "usd"
    success_url: str = ""
    cancel_url: str = ""
    card_brand: str = ""
    card_last4: str = ""
    last_failure: str = ""
    expires_at: Optional[datetime] = None


@dataclass(frozen=True)
class CardAttempt:
    outcome: str  # succeeded | declined | invalid | not_payable
    message: str
    page: HostedPage
    field_errors: Mapping[str, str] = field(default_factory=dict)
    event: Optional[PaymentEvent] = None
    redirect_url: Optional[str] = None


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = int(char)
        if index % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _brand(digits: str) -> str:
    if digits.startswith("4"):
        return "Visa"
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "Mastercard"
    if digits[:2] in ("34", "37"):
        return "American Express"
    if digits.startswith(("6011", "65")):
        return "Discover"
    return "Card"


def _check_card(card_number: str, expiry: str, cvc: str, now: datetime) -> Tuple[Dict[str, str], str]:
    """(field errors, digits). The digits only live in this call and the caller's frame."""
    errors: Dict[str, str] = {}
    digits = re.sub(r"[\s-]", "", card_number or "")
    if not digits:
        errors["card_number"] = "Please enter the card number."
    elif not digits.isdigit() or not 12 <= len(digits) <= 19:
        errors["card_number"] = "A card number has 12 to 19 digits."
    elif not _luhn(digits):
        errors["card_number"] = "That card number isn't valid; please check it."
    match = re.fullmatch(r"\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*", expiry or "")
    if not match or not 1 <= int(match.group(1)) <= 12:
        errors["expiry"] = "Enter the expiry date as MM/YY."
    else:
        month, year = int(match.group(1)), int(match.group(2))
        year = year + 2000 if year < 100 else year
        if (year, month) < (now.year, now.month):
            errors["expiry"] = "This card has expired."
        elif year > now.year + 25:
            errors["expiry"] = "That expiry date doesn't look right."
    if not re.fullmatch(r"\d{3,4}", (cvc or "").strip()):
        errors["cvc"] = "Enter the 3- or 4-digit security code (CVC)."
    return errors, digits


class SandboxPaymentProvider(PaymentProvider):
    """A gateway in test mode, living in the shop's own database: sessions, a hosted page, signed webhooks."""

    name = "sandbox"

    def __init__(self, *, base_url: Optional[str] = None, webhook_url: Optional[str] = None,
                 secret: Optional[str] = None, session_ttl: Optional[timedelta] = None, currency: str = "usd"):
        self._base_url = base_url.rstrip("/") if base_url else None
        self._webhook_url = webhook_url or os.environ.get("PAYMENT_WEBHOOK_URL") or None
        self.secret = secret or webhook_secret()
        if session_ttl is None:
            try:
                minutes = int(os.environ.get("PAYMENT_SESSION_TTL_MINUTES") or 60)
            except ValueError:
                minutes = 60
            session_ttl = timedelta(minutes=max(minutes, 1))
        self.session_ttl = session_ttl
        self.currency = currency
        if self.secret == DEV_WEBHOOK_SECRET:
            log.info("payment sandbox uses the development webhook secret; set PAYMENT_WEBHOOK_SECRET")

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._base_url or shop_settings().public_url

    @property
    def webhook_url(self) -> str:
        return self._webhook_url or f"{self.base_url}/webhooks/payments"

    def page_url(self, payment_session_id: str) -> str:
        return f"{self.base_url}/pay/{payment_session_id}"

    # -- sessions ----------------------------------------------------------------------------
    def create_session(self, order: Order, success_url: Optional[str] = None, cancel_url: Optional[str] = None,
                       *, now: Optional[datetime] = None) -> PaymentSession:
        now = utc_naive(now)
        session = object_session(order)
        if session is None:
            raise PaymentError("detached", "the order must belong to an open database session")
        if order.status != "pending_payment":
            raise PaymentError("not_payable", f"Order {order.number} is {STATUS_TEXT.get(order.status, order.status)}"
                                              ", so there is nothing to pay.")
        session.flush()
        existing = session.execute(
            select(PaymentSessionRecord).where(PaymentSessionRecord.order_id == order.id,
                                               PaymentSessionRecord.status == "open",
                                               PaymentSessionRecord.expires_at > now)
            .order_by(PaymentSessionRecord.created_at.desc())
        ).scalars().all()
        for record in existing:
            if (success_url is None or record.success_url == success_url.replace("{PAYMENT_SESSION_ID}", record.id)) \
                    and (cancel_url is None or record.cancel_url == cancel_url.replace("{PAYMENT_SESSION_ID}", record.id)):
                return self._session(record, order)
        session_id = "ps_test_" + secrets.token_urlsafe(24)
        page = self.page_url(session_id)
        record = PaymentSessionRecord(
            id=session_id, provider=self.name, order_id=order.id, status="open", amount_cents=order.total_cents,
            currency=self.currency,
            success_url=(success_url or f"{page}/success").replace("{PAYMENT_SESSION_ID}", session_id),
            cancel_url=(cancel_url or f"{page}/cancel").replace("{PAYMENT_SESSION_ID}", session_id),
            created_at=now, expires_at=now + self.session_ttl, attempts=0, last_failure="",
        )
        session.add(record)
        session.flush()
        log.info("payment session %s created for order %s", session_id, order.number)
        return self._session(record, order)

    def _session(self, record: PaymentSessionRecord, order: Order) -> PaymentSession:
        return PaymentSession(record.id, self.page_url(record.id), order.number, order.total_cents, record.expires_at)

    def _record(self, session: Session, payment_session_id: str, lock: bool = False) -> Optional[PaymentSessionRecord]:
        if not payment_session_id or not SESSION_ID_PATTERN.match(payment_session_id):
            return None
        query = select(PaymentSessionRecord).where(PaymentSessionRecord.id == payment_session_id)
        if lock:
            query = query.with_for_update()
        return session.execute(query).scalar_one_or_none()

    def hosted_page(self, session: Session, payment_session_id: str, *, now: Optional[datetime] = None) -> HostedPage:
        """What the hosted payment page shows for this session."""
        now = utc_naive(now)
        record = self._record(session, payment_session_id)
        if record is None:
            return HostedPage("missing", payment_session_id, "We couldn't find this payment. The link may be "
                                                             "mistyped or too old; ask the assistant for a new one.")
        order = session.get(Order, record.order_id)
        base = dict(
            payment_session_id=record.id, order_number=order.number,
            lines=tuple(PageLine(i.product_title + (f" ({i.variant_label})" if i.variant_label else ""),
                                 i.quantity, i.quantity * i.unit_price_cents) for i in order.items),
            subtotal_cents=order.subtotal_cents, discount_cents=order.discount_cents,
            shipping_cents=order.shipping_cents, tax_cents=order.tax_cents,
            total_cents=record.amount_cents if record.status != "open" else order.total_cents,
            currency=record.currency, success_url=record.success_url, cancel_url=record.cancel_url,
            card_brand=record.card_brand, card_last4=record.card_last4, last_failure=record.last_failure,
            expires_at=record.expires_at,
        )
        if record.status == "refunded":
            return HostedPage("refunded", message=f"This payment for order {order.number} was refunded in full. "
                                                  + refund_timing_text("cancellation"), **base)
        if record.status == "succeeded" or order.status not in ("pending_payment", "cancelled"):
            return HostedPage("paid", message=f"Order {order.number} is paid. Thank you!", **base)
        if order.status == "cancelled":
            return HostedPage("not_payable", message=f"Order {order.number} was cancelled, so it can't be paid.",
                              **base)
        if now >= record.expires_at:
            return HostedPage("expired", message="This payment link has expired. Ask the assistant for a new one; "
                                                 "your order and cart are saved.", **base)
        return HostedPage("open", message="", **base)

    def submit_card(self, session: Session, payment_session_id: str, *, card_number: str, expiry: str, cvc: str,
                    now: Optional[datetime] = None) -> CardAttempt:
        """Charge the order's current total to a test card. Returns the attempt with the event to deliver
        (none for invalid input). Only the brand and last four digits are kept."""
        now = utc_naive(now)
        record = self._record(session, payment_session_id, lock=True)  # one submission at a time
        page = self.hosted_page(session, payment_session_id, now=now)
        if record is None or page.state != "open":
            return CardAttempt("not_payable", page.message, page)
        errors, digits = _check_card(card_number, expiry, cvc, now)
        if errors:
            first = next(iter(errors.values()))
            return CardAttempt("invalid", first, page, errors)
        if digits not in (SUCCESS_CARD, DECLINED_CARD):
            return CardAttempt("invalid", NOT_ACCEPTED_MESSAGE, page, {"card_number": NOT_ACCEPTED_MESSAGE})
        brand, last4 = _brand(digits), digits[-4:]
        succeeded = digits == SUCCESS_CARD
        del digits
        order = session.get(Order, record.order_id)
        event = PaymentEvent(
            id="evt_" + secrets.token_hex(12), type="payment.succeeded" if succeeded else "payment.failed",
            created=_epoch(now), payment_session_id=record.id, order_number=order.number,
            amount_cents=order.total_cents, currency=record.currency, card_brand=brand, card_last4=last4,
            failure_message="" if succeeded else DECLINE_MESSAGE,
        )
        record.pending_event = event.to_json().decode("utf-8")
        record.delivered_at = None
        if succeeded:
            record.status = "succeeded"
            record.amount_cents = order.total_cents
            record.completed_at = now
            record.card_brand, record.card_last4 = brand, last4
            log.info("payment session %s: %s ending %s succeeded", record.id, brand, last4)
            session.flush()
            return CardAttempt("succeeded", f"Payment of {format_money(order.total_cents)} received.",
                               self.hosted_page(session, record.id, now=now), {}, event, record.success_url)
        record.attempts = (record.attempts or 0) + 1
        record.last_failure = DECLINE_MESSAGE
        log.info("payment session %s: %s ending %s declined", record.id, brand, last4)
        session.flush()
        return CardAttempt("declined", DECLINE_MESSAGE, self.hosted_page(session, record.id, now=now), {}, event, None)

    # -- webhooks ----------------------------------------------------------------------------
    def signed_request(self, event: PaymentEvent, *, now: Optional[datetime] = None) -> Tuple[bytes, Dict[str, str]]:
        """(body, headers) of the webhook call for this event, signed now."""
        body = event.to_json()
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body, _epoch(utc_naive(now)))}

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, *,
                       now: Optional[datetime] = None) -> PaymentEvent:
        return verify_signed(self.secret, headers, body, now)

    def mark_delivered(self, session: Session, event: PaymentEvent, *, now: Optional[datetime] = None) -> None:
        record = self._record(session, event.payment_session_id)
        if record is not None and record.pending_event and json.loads(record.pending_event).get("id") == event.id:
            record.pending_event = None
            record.delivered_at = utc_naive(now)
            session.flush()

    def undelivered_events(self, session: Session) -> List[PaymentEvent]:
        """Events whose webhook call has not been accepted yet (for a retry job: `deliver` each)."""
        rows = session.execute(
            select(PaymentSessionRecord.pending_event).where(PaymentSessionRecord.pending_event.isnot(None))
        ).scalars().all()
        return [PaymentEvent.from_dict(json.loads(row)) for row in rows]

    def deliver(self, event: PaymentEvent, *, now: Optional[datetime] = None, timeout: float = 10.0) -> int:
        """POST the signed event to the webhook URL (blocking); the HTTP status, 0 when unreachable."""
        body, headers = self.signed_request(event, now=now)
        request = urllib.request.Request(self.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own URL
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError) as error:
            log.warning("webhook %s for %s not delivered: %s", event.id, event.order_number, error)
            return 0


# --------------------------------------------------------------------------------------------
# The shop's side: processing an event
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaymentOutcome:
    status: str  # paid | declined | duplicate | already_paid | out_of_stock | not_payable | amount_mismatch | unknown
    changed: bool  # False when the event changed nothing (replays, repeats)
    event_id: str
    order_number: Optional[str] = None
    conversation_id: Optional[str] = None  # where to tell the shopper (chat orders)
    amount_cents: int = 0
    refund_cents: int = 0
    card_brand: str = ""
    card_last4: str = ""
    message: str = ""  # shopper-facing

    def to_dict(self) -> dict:
        return asdict(self)


PaymentHook = Callable[[PaymentOutcome], None]


def _after_commit(session: Session, hook: Optional[PaymentHook], outcome: PaymentOutcome) -> None:
    """Run `hook(outcome)` once the caller's transaction commits (never for a rolled-back one)."""
    if hook is None:
        return
    state = {"done": False}

    def committed(_session: Session) -> None:
        if state["done"]:
            return
        state["done"] = True
        try:
            hook(outcome)
        except Exception:  # noqa: BLE001 - a failing notification must not undo a payment
            log.exception("payment hook failed for order %s", outcome.order_number)

    def rolled_back(_session: Session) -> None:
        state["done"] = True

    sa_event.listen(session, "after_commit", committed, once=True)
    sa_event.listen(session, "after_rollback", rolled_back, once=True)


def _take_stock(session: Session, order: Order) -> Optional[str]:
    """Take the order's units off the shelf, all or nothing; the label of a line that is short, else None."""
    wanted: Dict[int, int] = {}
    labels: Dict[int, str] = {}
    for item in order.items:
        if item.variant_id is not None:
            wanted[item.variant_id] = wanted.get(item.variant_id, 0) + item.quantity
            labels.setdefault(item.variant_id, item.product_title + (f" ({item.variant_label})" if item.variant_label else ""))
    taken: List[Tuple[int, int]] = []
    short = None
    for variant_id in sorted(wanted):  # one lock order for everybody: no deadlocks
        quantity = wanted[variant_id]
        result = session.execute(
            update(Variant).where(Variant.id == variant_id, Variant.stock >= quantity)
            .values(stock=Variant.stock - quantity).execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            short = labels[variant_id]
            break
        taken.append((variant_id, quantity))
    if short is not None:
        for variant_id, quantity in taken:
            session.execute(update(Variant).where(Variant.id == variant_id).values(stock=Variant.stock + quantity)
                            .execution_options(synchronize_session=False))
    for variant_id in wanted:
        cached = session.identity_map.get(session.identity_key(Variant, variant_id))
        if cached is not None:
            session.expire(cached, ["stock"])
    return short


def _check_out_cart(session: Session, order: Order, record: CheckoutOrder, now: datetime) -> None:
    """The order's cart becomes checked_out; anything added after the order was placed moves to a new cart."""
    cart = session.get(Cart, record.cart_id)
    if cart is None or cart.status != "open":
        return
    ordered: Dict[int, int] = {}
    for item in order.items:
        if item.variant_id is not None:
            ordered[item.variant_id] = ordered.get(item.variant_id, 0) + item.quantity
    leftovers = [(item.variant_id, item.quantity - ordered.get(item.variant_id, 0), item.unit_price_cents)
                 for item in cart.items if item.quantity > ordered.get(item.variant_id, 0)]
    cart.status = "checked_out"
    cart.updated_at = now
    if leftovers:
        fresh = Cart(session_id=cart.session_id, customer_id=cart.customer_id, status="open", created_at=now,
                     updated_at=now)
        for variant_id, quantity, price in leftovers:
            fresh.items.append(CartItem(variant_id=variant_id, quantity=min(quantity, MAX_LINE_QUANTITY),
                                        unit_price_cents=price))
        session.add(fresh)


def _refund(order: Order, amount: int) -> None:
    if amount > 0:
        order.refunds.append(Refund(amount_cents=amount, status="pending", method="original_payment"))


def handle_payment_event(session: Session, event: PaymentEvent, *, on_paid: Optional[PaymentHook] = None,
                         on_failed: Optional[PaymentHook] = None, now: Optional[datetime] = None) -> PaymentOutcome:
    """Apply a verified event to the shop (see the module doc). Idempotent.

    `on_paid(outcome)` runs after the caller's transaction commits when an order became paid, e.g. to let the
    assistant confirm in the chat (Rasa's trigger_intent API, with outcome.conversation_id).
    `on_failed(outcome)` runs likewise for a declined payment or a payment refunded because the stock ran out.
    """
    now = utc_naive(now)
    duplicate = PaymentOutcome("duplicate", False, event.id, event.order_number,
                               message="This payment event was already processed.")
    if session.get(PaymentEventRecord, event.id) is not None:
        return duplicate
    record = session.get(PaymentSessionRecord, event.payment_session_id)
    order = None
    if record is not None:
        order = session.execute(select(Order).where(Order.id == record.order_id).with_for_update()).scalar_one()
        # the same event delivered twice at once: the second one waited for the order's lock
        if session.get(PaymentEventRecord, event.id) is not None:
            return duplicate
    if order is None or order.number != event.order_number:
        session.add(PaymentEventRecord(id=event.id, type=event.type, payment_session_id=event.payment_session_id,
                                       order_id=None, outcome="unknown", received_at=now))
        session.flush()
        log.warning("payment event %s names an unknown session or order", event.id)
        return PaymentOutcome("unknown", True, event.id, event.order_number,
                              message="This payment doesn't match an order.")
    base = dict(event_id=event.id, order_number=order.number, conversation_id=order.conversation_id,
                amount_cents=event.amount_cents, card_brand=event.card_brand, card_last4=event.card_last4)

    def done(status: str, message: str, refund: int = 0, hook: Optional[PaymentHook] = None) -> PaymentOutcome:
        session.add(PaymentEventRecord(id=event.id, type=event.type, payment_session_id=record.id,
                                       order_id=order.id, outcome=status, received_at=now))
        order.updated_at = now
        session.flush()
        outcome = PaymentOutcome(status, True, refund_cents=refund, message=message, **base)
        _after_commit(session, hook, outcome)
        log.info("payment event %s for order %s: %s", event.id, order.number, status)
        return outcome

    if event.type == "payment.failed":
        if order.status != "pending_payment":
            return done("declined", f"A payment attempt for order {order.number} was declined; the order is "
                                    f"{STATUS_TEXT.get(order.status, order.status)}.")
        return done("declined", f"The payment for order {order.number} was declined, so the order is still waiting "
                                "for payment and your cart is unchanged. You can try again with another card.",
                    hook=on_failed)

    # payment.succeeded
    if order.status != "pending_payment":
        if record.status == "succeeded" and order.status != "cancelled" and event.amount_cents == record.amount_cents:
            same = session.execute(select(PaymentEventRecord).where(
                PaymentEventRecord.payment_session_id == record.id, PaymentEventRecord.outcome == "paid")).first()
            if same is not None:
                session.add(PaymentEventRecord(id=event.id, type=event.type, payment_session_id=record.id,
                                               order_id=order.id, outcome="already_paid", received_at=now))
                session.flush()
                return PaymentOutcome("already_paid", False, message=f"Order {order.number} is already paid.", **base)
        # money for an order that can't take it (cancelled, or paid through another session): give it back
        _refund(order, event.amount_cents)
        record.status = "refunded"
        why = "was cancelled" if order.status == "cancelled" else "was already paid"
        return done("not_payable", f"Order {order.number} {why}, so we're refunding this payment of "
                                   f"{format_money(event.amount_cents)} in full. " + refund_timing_text("cancellation"),
                    refund=event.amount_cents, hook=on_failed)
    if event.amount_cents != order.total_cents:
        _refund(order, event.amount_cents)
        record.status = "refunded"
        return done("amount_mismatch", f"The payment of {format_money(event.amount_cents)} doesn't match the "
                                       f"order total of {format_money(order.total_cents)} (the order changed), so "
                                       "we're refunding it; please pay the new total.",
                    refund=event.amount_cents, hook=on_failed)
    checkout = session.get(CheckoutOrder, order.id)
    if checkout is not None and checkout.stock_taken_at is None:
        short = _take_stock(session, order)
        if short is not None:
            transition(order, "cancelled")
            _refund(order, event.amount_cents)
            record.status = "refunded"
            return done("out_of_stock", f"Sorry, {short} sold out just before your payment went through, so we've "
                                        f"cancelled order {order.number} and are refunding the full "
                                        f"{format_money(event.amount_cents)}. "
                                        + refund_timing_text("cancellation"),
                        refund=event.amount_cents, hook=on_failed)
        checkout.stock_taken_at = now
    # (an order placed outside shop.checkout holds its stock since placement: shop.orders' convention)
    transition(order, "paid")
    if order.discount_code_id is not None:
        session.execute(update(DiscountCode).where(DiscountCode.id == order.discount_code_id)
                        .values(times_used=DiscountCode.times_used + 1).execution_options(synchronize_session=False))
        cached = session.identity_map.get(session.identity_key(DiscountCode, order.discount_code_id))
        if cached is not None:
            session.expire(cached, ["times_used"])
    if checkout is not None:
        _check_out_cart(session, order, checkout, now)
    if record.status != "succeeded":  # a gateway that reports only by webhook
        record.status = "succeeded"
        record.completed_at = now
        record.amount_cents = event.amount_cents
        record.card_brand, record.card_last4 = event.card_brand, event.card_last4
    card = f", {event.card_brand} ending {event.card_last4}" if event.card_last4 else ""
    return done("paid", f"Payment received: order {order.number} is paid ({format_money(event.amount_cents)}{card}). "
                        "We'll let you know when it ships.", hook=on_paid)
