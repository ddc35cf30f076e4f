"""Abandoned-cart reminders: a jobs table in the shop database, polled by the background worker.

When a chat cart has items and the shopper goes quiet for SHOP_CART_REMINDER_DELAY_SECONDS, the worker
(`shop.worker`, calling `run_due_reminders`) sends a reminder into the same chat through Rasa's
trigger_intent API (intent EXTERNAL_cart_reminder; actions/recovery.py lists the items), with a new
single-use discount code when SHOP_CART_REMINDER_DISCOUNT_PERCENT > 0.

Why a table and not Rasa's ReminderScheduled events: those live in the Rasa server's memory and are lost
when it restarts. A row here survives restarts of Rasa, the action server and the worker alike.

One row per reminder message (`sequence` 1, 2, ... up to SHOP_CART_REMINDER_MAX per cart):

* scheduled: due at `due_at`. Every cart change re-arms it to now + delay (`schedule_for_cart`, called by
  shop.carts whenever a cart changes). When it falls due, the worker first applies the stop rules, then
  checks the shopper really was quiet (the cart's `updated_at` and, when given, the conversation's latest
  event in Rasa); a shopper still active moves it to their last activity + delay.
* sent: delivered (`sent_at`). The next reminder of the cart, if the maximum allows, is scheduled at
  sent_at + delay.
* stopped: not sent, `stop_reason` says why: checked_out, abandoned (merged into another cart), emptied,
  declined (the shopper said "no thanks" / "stop reminding me"), max_reached.
* recovered: a sent reminder after which the cart was checked out: the order from that cart was placed
  after the reminder and paid (within SHOP_CART_RECOVERY_WINDOW_DAYS). `recovered_cents` is the order
  total. Only the last reminder before the order is credited, so a cart counts once.

Delivery: a reminder is claimed with a conditional UPDATE (`WHERE status='scheduled' AND due_at <= now`,
rowcount 1), which moves its due_at a lease ahead, and committed before Rasa is called, so several workers
never send the same reminder and no database lock is held during the HTTP call. Rasa down: `attempts`
grows and the reminder is due again after SHOP_WORKER_RETRY_SECONDS; nothing is lost. A worker that dies
between sending and recording may send it once more after the lease (at least once, never lost).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Mapping, Optional

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, func, select, update
from sqlalchemy.orm import Session

from shop.carts import utc_naive
from shop.models import Base, Cart, DiscountCode, Order
from shop.promotions import PAID_STATUSES, issue_single_use_code

log = logging.getLogger(__name__)

__all__ = [
    "CART_REMINDER_INTENT", "CartReminder", "LastActivity", "ReminderOptOut", "ReminderSettings", "Sender",
    "mark_recovered_carts", "reminder_settings", "run_due_reminders", "schedule_for_cart", "setting",
    "stop_reminders",
]

CART_REMINDER_INTENT = "EXTERNAL_cart_reminder"
# How long a claimed reminder is kept from other workers; far longer than one Rasa call may take.
CLAIM_LEASE = timedelta(minutes=5)
BATCH_SIZE = 100  # reminders handled per run; the rest wait for the next run, seconds later
CODE_PREFIX = "COMEBACK"

# send(conversation_id, intent, entities) -> True when Rasa accepted it (shop.rasa_client.trigger_intent)
Sender = Callable[[str, str, Mapping[str, Any]], bool]
# last_activity(conversation_id) -> when the conversation last had an event, None when unknown
LastActivity = Callable[[str], Optional[datetime]]


def setting(name: str, default: int) -> int:
    """A whole-number setting from the environment (read on each call, so tests and servers see their own)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"{name}={value!r} must be 0 or more")
    return number


@dataclass(frozen=True)
class ReminderSettings:
    delay: timedelta  # quiet time before a reminder, and between two reminders
    max_reminders: int  # per cart; 0 turns reminders off
    discount_percent: int  # 0: no code
    code_valid_for: timedelta
    retry_after: timedelta  # after a failed delivery
    recovery_window: timedelta  # a checkout this long after a reminder still counts as recovered


def reminder_settings() -> ReminderSettings:
    return ReminderSettings(
        delay=timedelta(seconds=setting("SHOP_CART_REMINDER_DELAY_SECONDS", 1800)),
        max_reminders=setting("SHOP_CART_REMINDER_MAX", 2),
        discount_percent=min(setting("SHOP_CART_REMINDER_DISCOUNT_PERCENT", 10), 100),
        code_valid_for=timedelta(hours=setting("SHOP_CART_REMINDER_CODE_VALID_HOURS", 48)),
        retry_after=timedelta(seconds=setting("SHOP_WORKER_RETRY_SECONDS", 60)),
        recovery_window=timedelta(days=setting("SHOP_CART_RECOVERY_WINDOW_DAYS", 7)),
    )


class CartReminder(Base):
    """One abandoned-cart reminder message (see the module doc for the statuses)."""

    __tablename__ = "cart_reminders"
    id = Column(Integer, primary_key=True)
    cart_id = Column(Integer, ForeignKey("carts.id", ondelete="CASCADE"), nullable=False, index=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    sequence = Column(Integer, nullable=False)  # 1 for the cart's first reminder, 2 for the next, ...
    status = Column(String(20), nullable=False, default="scheduled", index=True)
    due_at = Column(DateTime, nullable=False, index=True)
    attempts = Column(Integer, nullable=False, default=0)  # delivery tries (a failed one is retried)
    discount_code_id = Column(Integer, ForeignKey("discount_codes.id"), nullable=True)
    sent_at = Column(DateTime, nullable=True, index=True)
    stop_reason = Column(String(20), nullable=False, default="")
    recovered_order_id = Column(Integer, ForeignKey("orders.id"), nullable=True)
    recovered_cents = Column(Integer, nullable=False, default=0)
    recovered_at = Column(DateTime, nullable=True, index=True)
    created_at = Column(DateTime, nullable=False)
    updated_at = Column(DateTime, nullable=False)


class ReminderOptOut(Base):
    """A conversation whose shopper said "no thanks" to cart reminders: none are scheduled for it again."""

    __tablename__ = "cart_reminder_opt_outs"
    conversation_id = Column(String(255), primary_key=True)
    opted_out_at = Column(DateTime, nullable=False)


# --------------------------------------------------------------------------------------------
# Scheduling (called on every cart change)
# --------------------------------------------------------------------------------------------

def _scheduled(session: Session, cart_id: int) -> Optional[CartReminder]:
    return session.execute(
        select(CartReminder).where(CartReminder.cart_id == cart_id, CartReminder.status == "scheduled")
        .order_by(CartReminder.id.desc()).limit(1)
    ).scalar_one_or_none()


def _sent_count(session: Session, cart_id: int) -> int:
    return session.execute(
        select(func.count()).select_from(CartReminder)
        .where(CartReminder.cart_id == cart_id, CartReminder.sent_at.is_not(None))
    ).scalar_one()


def _opted_out(session: Session, conversation_id: str) -> bool:
    return session.get(ReminderOptOut, conversation_id) is not None


def _stop_reason(session: Session, cart: Cart, settings: ReminderSettings) -> Optional[str]:
    """Why this cart gets no (more) reminders, or None when it may."""
    if cart.status == "checked_out":
        return "checked_out"
    if cart.status != "open":
        return "abandoned"
    if not cart.items:
        return "emptied"
    if _opted_out(session, cart.session_id):
        return "declined"
    if _sent_count(session, cart.id) >= settings.max_reminders:
        return "max_reached"
    return None


def _stop(reminder: CartReminder, reason: str, now: datetime) -> None:
    reminder.status = "stopped"
    reminder.stop_reason = reason
    reminder.updated_at = now


def schedule_for_cart(session: Session, cart: Cart, now: datetime, *,
                      settings: Optional[ReminderSettings] = None) -> Optional[CartReminder]:
    """Re-arm the cart's reminder after a change: due at now + delay. Creates the cart's next reminder when
    none is scheduled and the maximum allows; stops the scheduled one when a stop rule applies (checked out,
    merged away, emptied, the shopper declined, the maximum reached). Returns the scheduled reminder or None."""
    settings = settings or reminder_settings()
    now = utc_naive(now)
    if cart.id is None:
        session.flush()
    current = _scheduled(session, cart.id)
    reason = _stop_reason(session, cart, settings)
    if reason is not None:
        if current is not None:
            _stop(current, reason, now)
        return None
    if current is None:
        current = CartReminder(cart_id=cart.id, conversation_id=cart.session_id,
                               sequence=_sent_count(session, cart.id) + 1, status="scheduled", attempts=0,
                               created_at=now)
        session.add(current)
    current.due_at = now + settings.delay
    current.updated_at = now
    session.flush()
    return current


def stop_reminders(session: Session, conversation_id: str, now: datetime) -> int:
    """The shopper said "no thanks" / "stop reminding me": no cart reminders for this conversation any more.
    Returns how many scheduled reminders were stopped (0 is fine: the opt-out is recorded anyway)."""
    now = utc_naive(now)
    if not _opted_out(session, conversation_id):
        session.add(ReminderOptOut(conversation_id=conversation_id, opted_out_at=now))
    stopped = session.execute(
        update(CartReminder).where(CartReminder.conversation_id == conversation_id,
                                   CartReminder.status == "scheduled")
        .values(status="stopped", stop_reason="declined", updated_at=now)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    session.flush()
    return stopped


# --------------------------------------------------------------------------------------------
# Recovery: a checkout after a reminder
# --------------------------------------------------------------------------------------------

def mark_recovered_carts(session: Session, now: datetime, *, settings: Optional[ReminderSettings] = None) -> int:
    """Credit the carts checked out after a reminder: the last reminder sent before the cart's paid order was
    placed becomes `recovered` with the order's total. Returns how many carts were newly credited."""
    from shop.checkout import CheckoutOrder  # checkout builds on carts, like this module

    settings = settings or reminder_settings()
    now = utc_naive(now)
    credited = select(CartReminder.cart_id).where(CartReminder.status == "recovered")
    candidates = session.execute(
        select(CartReminder.cart_id).join(Cart, Cart.id == CartReminder.cart_id)
        .where(CartReminder.status == "sent", CartReminder.sent_at >= now - settings.recovery_window,
               Cart.status == "checked_out", CartReminder.cart_id.not_in(credited))
        .distinct()
    ).scalars().all()
    count = 0
    for cart_id in candidates:
        found = session.execute(
            select(Order, CheckoutOrder).join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
            .where(CheckoutOrder.cart_id == cart_id, Order.status.in_(PAID_STATUSES))
            .order_by(Order.placed_at.desc()).limit(1)
        ).first()
        if found is None:
            continue
        order, record = found
        reminder = session.execute(
            select(CartReminder).where(CartReminder.cart_id == cart_id, CartReminder.status == "sent",
                                       CartReminder.sent_at <= order.placed_at)
            .order_by(CartReminder.sent_at.desc()).limit(1)
        ).scalar_one_or_none()
        if reminder is None:  # ordered before any reminder: nothing to credit
            continue
        # Conditional: another worker (or the report) may credit the same cart at the same time.
        changed = session.execute(
            update(CartReminder).where(CartReminder.id == reminder.id, CartReminder.status == "sent")
            .values(status="recovered", recovered_order_id=order.id, recovered_cents=order.total_cents,
                    recovered_at=record.stock_taken_at or now, updated_at=now)
            .execution_options(synchronize_session="fetch")
        ).rowcount
        count += changed
    session.flush()
    return count


# --------------------------------------------------------------------------------------------
# The worker's job
# --------------------------------------------------------------------------------------------

def _claim(session: Session, reminder_id: int, now: datetime) -> bool:
    claimed = session.execute(
        update(CartReminder).where(CartReminder.id == reminder_id, CartReminder.status == "scheduled",
                                   CartReminder.due_at <= now)
        .values(due_at=now + CLAIM_LEASE, updated_at=now).execution_options(synchronize_session="fetch")
    ).rowcount == 1
    session.commit()
    return claimed


def _discount_code(session: Session, reminder: CartReminder, cart: Cart, now: datetime,
                   settings: ReminderSettings) -> Optional[DiscountCode]:
    """The reminder's single-use code: made once and kept, so a retried delivery offers the same code."""
    if reminder.discount_code_id is not None:
        return session.get(DiscountCode, reminder.discount_code_id)
    if settings.discount_percent <= 0:
        return None
    code = issue_single_use_code(
        session, prefix=CODE_PREFIX, percent=settings.discount_percent, now=now, valid_for=settings.code_valid_for,
        description=f"{settings.discount_percent}% off the cart you left (reminder {reminder.sequence})",
        customer_id=cart.customer_id,
    )
    reminder.discount_code_id = code.id
    session.commit()  # before sending: the shopper must never read a code that was not saved
    return code


def _deliver(session: Session, reminder: CartReminder, now: datetime, send: Sender,
             last_activity: Optional[LastActivity], settings: ReminderSettings) -> bool:
    cart = session.get(Cart, reminder.cart_id)
    session.refresh(reminder)
    reason = _stop_reason(session, cart, settings) if cart is not None else "emptied"
    if reason is not None:
        _stop(reminder, reason, now)
        session.commit()
        return False
    active = [cart.updated_at]
    if last_activity is not None:
        active.append(last_activity(reminder.conversation_id))
    if reminder.sequence > 1:
        active.append(session.execute(
            select(func.max(CartReminder.sent_at)).where(CartReminder.cart_id == cart.id)).scalar_one())
    quiet_since = max(moment for moment in active if moment is not None)
    if quiet_since + settings.delay > now:  # the shopper was around after all: wait for a real pause
        reminder.due_at = quiet_since + settings.delay
        reminder.updated_at = now
        session.commit()
        return False
    code = _discount_code(session, reminder, cart, now, settings)
    entities: Dict[str, Any] = {"discount_code": code.code} if code is not None else {}
    delivered = send(reminder.conversation_id, CART_REMINDER_INTENT, entities)
    reminder.attempts += 1
    reminder.updated_at = now
    if not delivered:
        reminder.due_at = now + settings.retry_after
        log.warning("cart reminder %s not delivered (try %s); trying again at %s", reminder.id,
                    reminder.attempts, reminder.due_at)
        session.commit()
        return False
    reminder.status = "sent"
    reminder.sent_at = now
    if reminder.sequence < settings.max_reminders:
        session.add(CartReminder(cart_id=cart.id, conversation_id=reminder.conversation_id,
                                 sequence=reminder.sequence + 1, status="scheduled", attempts=0,
                                 due_at=now + settings.delay, created_at=now, updated_at=now))
    session.commit()
    log.info("cart reminder %s sent to conversation %s", reminder.id, reminder.conversation_id)
    return True


def run_due_reminders(session: Session, now: datetime, send: Sender, *,
                      last_activity: Optional[LastActivity] = None,
                      settings: Optional[ReminderSettings] = None) -> int:
    """Send the reminders that are due at `now` (the worker's clock) through `send`; returns how many were sent.

    Credits recovered carts first (`mark_recovered_carts`). Commits after each step of each reminder (see
    the module doc), so pass a session of its own."""
    settings = settings or reminder_settings()
    now = utc_naive(now)
    mark_recovered_carts(session, now, settings=settings)
    session.commit()
    due: List[int] = session.execute(
        select(CartReminder.id).where(CartReminder.status == "scheduled", CartReminder.due_at <= now)
        .order_by(CartReminder.due_at, CartReminder.id).limit(BATCH_SIZE)
    ).scalars().all()
    sent = 0
    for reminder_id in due:
        if not _claim(session, reminder_id, now):
            continue  # another worker has it
        sent += _deliver(session, session.get(CartReminder, reminder_id), now, send, last_activity, settings)
    return sent
