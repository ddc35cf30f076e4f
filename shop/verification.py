"""Identity verification before any order data is shown.

Two ways in, both tied to one conversation:

* order details: an order number plus the email address (case-insensitive) or the postcode
  (spaces, dashes and case ignored; a US ZIP+4 matches its 5-digit ZIP) of that order.
  An unknown number and a wrong detail get the very same reply, so an unverified caller never
  learns whether an order exists.
* a one-time code: `send_code` emails a 6-digit code to the address on file when a customer or
  order with that email exists (the reply is the same either way), `verify_code` checks it.
  Codes are stored salted and hashed with scrypt, expire after 10 minutes and allow 5 tries.

Protection against guessing, all persisted in the database (it survives restarts):

* MAX_FAILURES (5) failed attempts lock the conversation for LOCKOUT (15 minutes);
* ORDER_FAILURE_LIMIT (10) failed detail attempts on one order number within
  ORDER_FAILURE_WINDOW (1 hour), from any conversations, refuse further detail attempts on that
  number; the emailed-code path stays open, so the real owner can still get in;
* code requests are throttled per conversation and per email address.

A successful verification marks the conversation as verified for the shopper's email for the rest
of the conversation (at most SHOP_VERIFIED_SESSION_HOURS, default 24); `verified_email()` gives it
to the order services as `owner_email`.

All functions take the time (`now`, naive UTC or aware) so tests control the clock. They return a
`VerificationResult` instead of raising, because the failed attempt they record must be committed
by the caller's unit of work (`shop.db.session_scope` commits on a normal return).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional, Protocol

from sqlalchemy import Boolean, Column, DateTime, Integer, String, delete, func, select
from sqlalchemy.orm import Session

from shop.models import Base, Customer, Order
from shop.orders import InvalidOrderNumber, normalise_order_number
from shop.settings import shop_settings

log = logging.getLogger(__name__)

__all__ = [
    "CODE_MAX_TRIES", "CODE_TTL", "LOCKOUT", "MAX_FAILURES", "ORDER_FAILURE_LIMIT", "ORDER_FAILURE_WINDOW",
    "NotVerified", "OneTimeCode", "VerificationAttempt", "VerificationResult", "VerificationSession",
    "end_verification", "is_verified", "lock_status", "purge_expired", "require_verified", "send_code", "verified_email",
    "verify_by_order_details", "verify_code",
]

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
ORDER_FAILURE_LIMIT = 10
ORDER_FAILURE_WINDOW = timedelta(hours=1)
CODE_TTL = timedelta(minutes=10)
CODE_MAX_TRIES = 5
CODE_SENDS_PER_CONVERSATION = 3
CODE_SENDS_PER_EMAIL = 5
CODE_SEND_WINDOW = timedelta(minutes=15)
CODE_EMAIL_WINDOW = timedelta(hours=1)
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


def _now() -> datetime:
    return datetime.utcnow()


# --------------------------------------------------------------------------------------------
# Tables (registered on the shop's Base: create_schema creates them once this module is imported)
# --------------------------------------------------------------------------------------------

class VerificationSession(Base):
    """Per conversation: failed attempts, lock, and who it is verified as."""

    __tablename__ = "verification_sessions"
    conversation_id = Column(String(255), primary_key=True)
    failed_attempts = Column(Integer, nullable=False, default=0)
    locked_until = Column(DateTime, nullable=True)
    verified_email = Column(String(255), nullable=True)
    verified_at = Column(DateTime, nullable=True)
    verified_via = Column(String(20), nullable=True)  # order_details | email_code
    updated_at = Column(DateTime, nullable=False, default=_now)


class VerificationAttempt(Base):
    """One attempt: kind details (subject = order number), code or send (subject = email)."""

    __tablename__ = "verification_attempts"
    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    kind = Column(String(20), nullable=False)
    subject = Column(String(255), nullable=False, index=True)
    success = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False, default=_now, index=True)


class OneTimeCode(Base):
    __tablename__ = "verification_codes"
    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    email = Column(String(255), nullable=False)
    code_hash = Column(String(128), nullable=False)
    salt = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=_now)
    expires_at = Column(DateTime, nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    used_at = Column(DateTime, nullable=True)
    revoked = Column(Boolean, nullable=False, default=False)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerificationResult:
    """ok=True only for `verified` (and `code_sent`, which means "ask for the code next").

    code: verified | details_mismatch | locked | order_rate_limited | invalid_order_number |
          missing_detail | invalid_email | code_sent | send_throttled | mail_failed |
          invalid_code_format | no_active_code | wrong_code
    """

    ok: bool
    code: str
    message: str
    email: Optional[str] = None  # the verified shopper's email (only when code == verified)
    retry_after_seconds: Optional[int] = None
    attempts_left: Optional[int] = None

    @property
    def verified(self) -> bool:
        return self.code == "verified"


class NotVerified(Exception):
    """Raised by require_verified: the conversation has not (or no longer) proven who it is."""

    message = "For your security, I need to confirm it's you before I can show order details."

    def __init__(self, conversation_id: str):
        super().__init__(self.message)
        self.conversation_id = conversation_id


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> object: ...


MISMATCH = ("I couldn't verify that. Please check the order number and the email address or postcode "
            "you used for the order.")
CODE_SENT = ("If that email address belongs to one of our customers, a 6-digit code is on its way to it. "
             "It's valid for {minutes} minutes: type it here when it arrives.")


def _utc(now: Optional[datetime]) -> datetime:
    if now is None:
        return datetime.utcnow()
    if now.tzinfo is not None:
        return now.astimezone(timezone.utc).replace(tzinfo=None)
    return now


def _session_ttl() -> timedelta:
    raw = os.environ.get("SHOP_VERIFIED_SESSION_HOURS", "").strip()
    try:
        hours = float(raw) if raw else 24.0
    except ValueError:
        raise ValueError(f"SHOP_VERIFIED_SESSION_HOURS={raw!r} is not a number") from None
    return timedelta(hours=hours)


def _state(session: Session, conversation_id: str, now: datetime) -> VerificationSession:
    conversation_id = (conversation_id or "").strip()
    if not conversation_id:
        raise ValueError("a conversation id is required")
    state = session.get(VerificationSession, conversation_id)
    if state is None:  # stored only once something is recorded (_fail, _succeed, send_code)
        state = VerificationSession(conversation_id=conversation_id, failed_attempts=0, updated_at=now)
    return state


def _locked(state: VerificationSession, now: datetime) -> Optional[VerificationResult]:
    if state.locked_until is None or now >= state.locked_until:
        return None
    seconds = max(1, math.ceil((state.locked_until - now).total_seconds()))
    minutes = -(-seconds // 60)
    return VerificationResult(
        False, "locked",
        f"For your security, verification is paused after too many unsuccessful attempts. "
        f"Please try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        retry_after_seconds=seconds,
    )


def _fail(session: Session, state: VerificationSession, now: datetime, kind: str, subject: str,
          message: str, extra_left: Optional[int] = None) -> VerificationResult:
    """Record a failed attempt; the MAX_FAILURES-th locks the conversation."""
    session.add(state)
    session.add(VerificationAttempt(conversation_id=state.conversation_id, kind=kind, subject=subject[:255],
                                    success=False, created_at=now))
    state.failed_attempts = (state.failed_attempts or 0) + 1
    state.updated_at = now
    if state.failed_attempts >= MAX_FAILURES:
        state.failed_attempts = 0
        state.locked_until = now + LOCKOUT
        session.flush()
        return _locked(state, now)
    session.flush()
    left = MAX_FAILURES - state.failed_attempts
    if extra_left is not None:
        left = min(left, extra_left)
    return VerificationResult(False, _kind_code(kind), message, attempts_left=left)


def _kind_code(kind: str) -> str:
    return {"details": "details_mismatch", "code": "wrong_code"}.get(kind, "failed")


def _succeed(session: Session, state: VerificationSession, now: datetime, email: str, via: str,
             kind: str, subject: str) -> VerificationResult:
    session.add(state)
    session.add(VerificationAttempt(conversation_id=state.conversation_id, kind=kind, subject=subject[:255],
                                    success=True, created_at=now))
    state.failed_attempts = 0
    state.locked_until = None
    state.verified_email = email
    state.verified_at = now
    state.verified_via = via
    state.updated_at = now
    session.flush()
    return VerificationResult(True, "verified", "Thanks, you're verified.", email=email)


# --------------------------------------------------------------------------------------------
# Order details
# --------------------------------------------------------------------------------------------

def _postcode_key(text: str) -> str:
    return re.sub(r"[\s\-]", "", (text or "").upper())


def _postcodes_match(given: str, stored: str) -> bool:
    a, b = _postcode_key(given), _postcode_key(stored)
    if len(a) < 3 or len(b) < 3:
        return False
    if a == b:
        return True
    # US ZIP+4 against a 5-digit ZIP
    if a.isdigit() and b.isdigit() and {len(a), len(b)} == {5, 9}:
        return a[:5] == b[:5]
    return False


def _details_match(order: Order, detail: str) -> bool:
    if "@" in detail:
        wanted = detail.strip().lower()
        emails = [order.email] + ([order.customer.email] if order.customer else [])
        return any(hmac.compare_digest((e or "").strip().lower(), wanted) for e in emails)
    postcodes = [order.shipping_postcode] + ([order.customer.postcode] if order.customer else [])
    return any(_postcodes_match(detail, p) for p in postcodes if p)


def _recent_failures(session: Session, kind: str, subject: str, since: datetime) -> int:
    return session.execute(
        select(func.count()).select_from(VerificationAttempt).where(
            VerificationAttempt.kind == kind, VerificationAttempt.subject == subject,
            VerificationAttempt.success.is_(False), VerificationAttempt.created_at > since,
        )
    ).scalar_one()


def verify_by_order_details(session: Session, conversation_id: str, order_number: str, email_or_postcode: str,
                            now: Optional[datetime] = None) -> VerificationResult:
    """Verify with an order number plus that order's email or postcode (see the module docs)."""
    now = _utc(now)
    state = _state(session, conversation_id, now)
    locked = _locked(state, now)
    if locked:
        return locked
    try:
        number = normalise_order_number(order_number)
    except InvalidOrderNumber as exc:
        return VerificationResult(False, "invalid_order_number", exc.message)
    detail = (email_or_postcode or "").strip()
    if not detail:
        return VerificationResult(False, "missing_detail",
                                  "Please give the email address or the delivery postcode of the order.")
    if _recent_failures(session, "details", number, now - ORDER_FAILURE_WINDOW) >= ORDER_FAILURE_LIMIT:
        # counted per number whether or not the order exists, so this reply reveals nothing either
        return VerificationResult(
            False, "order_rate_limited",
            "There have been too many unsuccessful attempts to verify this order number, so I can't check it "
            "with order details for now. I can email a one-time code to your email address instead.",
            retry_after_seconds=int(ORDER_FAILURE_WINDOW.total_seconds()),
        )
    order = session.execute(select(Order).where(Order.number == number)).scalar_one_or_none()
    if order is None or not _details_match(order, detail):
        return _fail(session, state, now, "details", number, MISMATCH)
    return _succeed(session, state, now, order.email.strip().lower(), "order_details", "details", number)


# --------------------------------------------------------------------------------------------
# One-time codes
# --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _hash(code: str, salt_hex: str) -> str:
    return hashlib.scrypt(code.encode("ascii"), salt=bytes.fromhex(salt_hex), **_SCRYPT).hex()


def _recent(session: Session, since: datetime, **where) -> int:
    query = select(func.count()).select_from(VerificationAttempt).where(VerificationAttempt.created_at > since)
    for column, value in where.items():
        query = query.where(getattr(VerificationAttempt, column) == value)
    return session.execute(query).scalar_one()


def _address_on_file(session: Session, email: str) -> Optional[str]:
    customer = session.execute(
        select(Customer.email).where(func.lower(Customer.email) == email).limit(1)
    ).scalar_one_or_none()
    if customer:
        return customer
    return session.execute(
        select(Order.email).where(func.lower(Order.email) == email).order_by(Order.id.desc()).limit(1)
    ).scalar_one_or_none()


def send_code(session: Session, conversation_id: str, email: str, mailer: Mailer,
              now: Optional[datetime] = None) -> VerificationResult:
    """Email a 6-digit code if a customer or order has this email; the reply is the same either way.

    A mail failure returns code 'mail_failed' with an honest message (also for unknown addresses:
    the mailer's connection is checked then, so an outage looks the same for everyone).
    """
    from shop.mailer import MailerError

    now = _utc(now)
    state = _state(session, conversation_id, now)
    locked = _locked(state, now)
    if locked:
        return locked
    wanted = (email or "").strip().lower()
    if not _EMAIL.match(wanted) or len(wanted) > 255:
        return VerificationResult(False, "invalid_email", "That doesn't look like an email address; please check it.")
    if (_recent(session, now - CODE_SEND_WINDOW, kind="send", conversation_id=state.conversation_id)
            >= CODE_SENDS_PER_CONVERSATION
            or _recent(session, now - CODE_EMAIL_WINDOW, kind="send", subject=wanted) >= CODE_SENDS_PER_EMAIL):
        return VerificationResult(
            False, "send_throttled",
            "I've already sent several codes. Please use the latest one, or try again a little later.",
            retry_after_seconds=int(CODE_SEND_WINDOW.total_seconds()),
        )
    session.add(VerificationAttempt(conversation_id=state.conversation_id, kind="send", subject=wanted,
                                    success=True, created_at=now))
    session.flush()
    recipient = _address_on_file(session, wanted)
    minutes = int(CODE_TTL.total_seconds() // 60)
    try:
        if recipient:
            code = f"{secrets.randbelow(10 ** 6):06d}"
            name = shop_settings().name
            mailer.send(
                recipient,
                f"Your {name} verification code",
                f"Your verification code is {code}\n\n"
                f"Type it in the chat to continue. It expires in {minutes} minutes.\n"
                "If you didn't ask for it, you can ignore this email: nobody can see your orders without it.\n\n"
                f"{name}\n",
            )
            session.execute(
                OneTimeCode.__table__.update()
                .where(OneTimeCode.conversation_id == state.conversation_id, OneTimeCode.used_at.is_(None),
                       OneTimeCode.revoked.is_(False))
                .values(revoked=True)
            )
            salt = secrets.token_hex(16)
            session.add(OneTimeCode(conversation_id=state.conversation_id, email=recipient.strip().lower(),
                                    code_hash=_hash(code, salt), salt=salt, created_at=now,
                                    expires_at=now + CODE_TTL, attempts=0))
            session.flush()
        else:
            check = getattr(mailer, "check", None)
            if check is not None:
                check()
    except MailerError as exc:
        log.warning("verification code for conversation %s not sent: %s", state.conversation_id, exc)
        return VerificationResult(False, "mail_failed", exc.shopper_message)
    return VerificationResult(True, "code_sent", CODE_SENT.format(minutes=minutes))


def verify_code(session: Session, conversation_id: str, code: str,
                now: Optional[datetime] = None) -> VerificationResult:
    """Check the code last sent to this conversation (10 minutes, CODE_MAX_TRIES tries)."""
    now = _utc(now)
    state = _state(session, conversation_id, now)
    locked = _locked(state, now)
    if locked:
        return locked
    digits = re.sub(r"[\s\-]", "", code or "")
    if not re.fullmatch(r"\d{6}", digits):
        return VerificationResult(False, "invalid_code_format", "The code has 6 digits; please type it as it is in the email.")
    otc = session.execute(
        select(OneTimeCode)
        .where(OneTimeCode.conversation_id == state.conversation_id, OneTimeCode.revoked.is_(False),
               OneTimeCode.used_at.is_(None))
        .order_by(OneTimeCode.created_at.desc(), OneTimeCode.id.desc()).limit(1)
    ).scalar_one_or_none()
    if otc is None or now >= otc.expires_at or otc.attempts >= CODE_MAX_TRIES:
        return VerificationResult(False, "no_active_code",
                                  "That code has expired or is no longer valid. I can send you a new one.")
    if hmac.compare_digest(_hash(digits, otc.salt), otc.code_hash):
        otc.used_at = now
        return _succeed(session, state, now, otc.email, "email_code", "code", otc.email)
    otc.attempts += 1
    if otc.attempts >= CODE_MAX_TRIES:
        otc.revoked = True
    return _fail(session, state, now, "code", otc.email,
                 "That code isn't right. Please check the latest email from us and try again.",
                 extra_left=CODE_MAX_TRIES - otc.attempts)


# --------------------------------------------------------------------------------------------
# The verified conversation
# --------------------------------------------------------------------------------------------

def verified_email(session: Session, conversation_id: str, now: Optional[datetime] = None) -> Optional[str]:
    """The email this conversation proved it owns (lower-case), or None."""
    now = _utc(now)
    state = session.get(VerificationSession, (conversation_id or "").strip()) if conversation_id else None
    if state is None or not state.verified_email or state.verified_at is None:
        return None
    if now - state.verified_at > _session_ttl():
        return None
    return state.verified_email


def lock_status(session: Session, conversation_id: str, now: Optional[datetime] = None) -> Optional[VerificationResult]:
    """The `locked` result while the conversation is locked out, else None (lets a chat stop asking early)."""
    state = session.get(VerificationSession, (conversation_id or "").strip()) if conversation_id else None
    return _locked(state, _utc(now)) if state is not None else None


def is_verified(session: Session, conversation_id: str, now: Optional[datetime] = None) -> bool:
    return verified_email(session, conversation_id, now) is not None


def require_verified(session: Session, conversation_id: str, now: Optional[datetime] = None) -> str:
    """The verified email, or NotVerified (its `message` asks the shopper to verify)."""
    email = verified_email(session, conversation_id, now)
    if email is None:
        raise NotVerified(conversation_id)
    return email


def end_verification(session: Session, conversation_id: str) -> None:
    """Forget who the conversation is (e.g. on restart/logout); locks and attempt history stay."""
    state = session.get(VerificationSession, (conversation_id or "").strip())
    if state is not None:
        state.verified_email = None
        state.verified_at = None
        state.verified_via = None
        session.flush()


def purge_expired(session: Session, now: Optional[datetime] = None, keep: timedelta = timedelta(days=2)) -> int:
    """Delete attempts and codes older than `keep` (they no longer count for any limit); returns rows deleted."""
    cutoff = _utc(now) - max(keep, ORDER_FAILURE_WINDOW, CODE_EMAIL_WINDOW)
    removed = session.execute(delete(VerificationAttempt).where(VerificationAttempt.created_at < cutoff)).rowcount
    removed += session.execute(delete(OneTimeCode).where(OneTimeCode.expires_at < cutoff)).rowcount
    return removed
