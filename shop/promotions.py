"""Discount codes: the public promotions, applying a code to a cart with the real rules, and personal offers.

Rules a code must pass (checked in this order; each refusal says exactly why):

1. it exists (codes are matched case-insensitively, spaces ignored);
2. a personal code (`customer_id` set) only works for that customer (by email, or the customer the cart
   belongs to);
3. it has started (`starts_at`) and has not ended (`ends_at`, exclusive): "SPRING25 expired on 7 March";
4. its usage limit is not used up (`times_used` counts paid orders);
5. once per customer: a customer who already used it on a paid order is refused (checked again with the
   order's email at checkout, when the shopper may not have given an email yet);
6. the cart is not empty, and a category code needs at least one line of that category
   ("SHOES15 only applies to Shoes"); the discount then applies only to those lines;
7. the minimum spend is met by the merchandise subtotal: "FREESHIP needs $50.00 in the cart; you have $32.00".

No stacking: a cart carries one code. Applying a valid second code REPLACES the first (the reply says so);
an invalid second code is refused and the first one stays.

The amounts come from `shop.orders.price_lines` (percent of the whole cart or of the category's lines,
rounded down; a fixed amount never more than the subtotal; free standard shipping).

Personal offers (`first_order_code`, `loyalty_code`) are issued once per customer and recorded as a new
DiscountCode tied to the customer plus an `IssuedOffer` row; asking again returns the same code.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import List, Optional, Sequence

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, UniqueConstraint, func, or_, select
from sqlalchemy.orm import Session

from shop.carts import (
    CartDiscount,
    CartError,
    CartLine,
    CartView,
    build_view,
    cart_lines,
    find_customer,
    find_open_cart,
    normalise_email,
    quote_totals,
    utc_naive,
)
from shop.models import Base, Category, Customer, DiscountCode, Order
from shop.policy import format_money

__all__ = [
    "FIRST_ORDER_DAYS", "FIRST_ORDER_PERCENT", "LOYALTY_DAYS", "LOYALTY_PERCENT", "PAID_STATUSES", "CodeCheck",
    "CodeResult", "IssuedOffer", "OfferResult", "Promotion", "apply_code", "check_code", "first_order_code",
    "format_day", "issue_single_use_code", "loyalty_code", "normalise_code", "paid_orders_count",
    "public_promotions", "remove_code",
]

# Orders that count as paid (the money was taken at some point), e.g. for "once per customer".
PAID_STATUSES = ("paid", "packed", "shipped", "delivered", "return_requested", "returned", "refunded")

FIRST_ORDER_PERCENT = 10
FIRST_ORDER_DAYS = 30
LOYALTY_PERCENT = 15
LOYALTY_DAYS = 60
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class IssuedOffer(Base):
    """A personal offer given to a customer: at most one per kind (first_order, loyalty)."""

    __tablename__ = "issued_offers"
    __table_args__ = (UniqueConstraint("customer_id", "kind", name="issued_offer_once_per_kind"),)
    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    kind = Column(String(20), nullable=False)
    discount_code_id = Column(Integer, ForeignKey("discount_codes.id"), nullable=False)
    issued_at = Column(DateTime, nullable=False)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def normalise_code(code: object) -> str:
    """' save 20 ' -> 'SAVE20'."""
    return re.sub(r"\s+", "", "" if code is None else str(code)).upper()[:60]


def format_day(moment: datetime, now: Optional[datetime] = None) -> str:
    """'31 May' (the year is added when it is not the current one)."""
    text = f"{moment.day} {moment:%B}"
    if now is None or moment.year != now.year:
        text += f" {moment.year}"
    return text


def _customer_for(session: Session, email: Optional[str]) -> Optional[Customer]:
    return find_customer(session, email) if email else None


def _paid_orders(session: Session, customer: Optional[Customer], email: Optional[str]):
    conditions = []
    if customer is not None:
        conditions.append(Order.customer_id == customer.id)
    if email:
        conditions.append(func.lower(Order.email) == email.lower())
    if not conditions:
        return None
    return select(Order).where(or_(*conditions), Order.status.in_(PAID_STATUSES))


def paid_orders_count(session: Session, email: str) -> int:
    """How many paid orders (by the customer record or the order email) this email has."""
    email = normalise_email(email)
    query = _paid_orders(session, _customer_for(session, email), email)
    return session.execute(select(func.count()).select_from(query.subquery())).scalar_one()


def _kind_text(code: DiscountCode, category: Optional[str]) -> str:
    if code.kind == "percent":
        return f"{code.value}% off" + (f" {category}" if category else "")
    if code.kind == "fixed":
        return f"{format_money(code.value)} off" + (f" {category}" if category else "")
    return "free standard shipping"


def _category_name(session: Session, code: DiscountCode) -> Optional[str]:
    if code.category_id is None:
        return None
    category = session.get(Category, code.category_id)
    return category.name if category else None


# --------------------------------------------------------------------------------------------
# Checking a code
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    code: str
    reason: str  # "" when ok; else not_found, personal_code, needs_email, not_started, expired, used_up,
    #              already_used, empty_cart, wrong_category, min_spend
    message: str


def check_code(session: Session, code: DiscountCode, *, lines: Sequence[CartLine], email: Optional[str],
               now: datetime) -> CodeCheck:
    """Whether `code` may be used now on these cart lines by the shopper with `email` (None: unknown yet)."""
    now = utc_naive(now)
    name = code.code

    def no(reason: str, message: str) -> CodeCheck:
        return CodeCheck(False, name, reason, message)

    customer = _customer_for(session, email)
    if code.customer_id is not None:
        if not email:
            return no("needs_email", f"{name} is a personal code. Please tell me the email address it was sent "
                                     "to first.")
        if customer is None or customer.id != code.customer_id:
            return no("personal_code", f"{name} is a personal code for another customer, so it can't be used "
                                       "with this email address.")
    if code.starts_at is not None and now < code.starts_at:
        return no("not_started", f"{name} starts on {format_day(code.starts_at, now)}.")
    if code.ends_at is not None and now >= code.ends_at:
        return no("expired", f"{name} expired on {format_day(code.ends_at, now)}.")
    if code.usage_limit is not None and code.times_used >= code.usage_limit:
        return no("used_up", f"{name} has already been used the maximum number of times.")
    if code.once_per_customer and email:
        query = _paid_orders(session, customer, email)
        used = session.execute(query.where(Order.discount_code_id == code.id).limit(1)).scalar_one_or_none()
        if used is not None:
            return no("already_used", f"You've already used {name} on order {used.number}; it can be used once "
                                      "per customer.")
    if not lines:
        return no("empty_cart", f"Your cart is empty. Add something first, then I can apply {name}.")
    if code.category_id is not None and not any(line.category_id == code.category_id for line in lines):
        category = _category_name(session, code) or "one category"
        return no("wrong_category", f"{name} only applies to {category}.")
    subtotal = sum(line.line_total_cents for line in lines)
    if subtotal < (code.min_spend_cents or 0):
        return no("min_spend", f"{name} needs {format_money(code.min_spend_cents)} in the cart; you have "
                               f"{format_money(subtotal)}.")
    return CodeCheck(True, name, "", "")


def _find_code(session: Session, raw: str) -> Optional[DiscountCode]:
    return session.execute(select(DiscountCode).where(func.upper(DiscountCode.code) == raw)).scalar_one_or_none()


# --------------------------------------------------------------------------------------------
# Applying a code to the cart
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodeResult:
    ok: bool
    code: str
    reason: str  # see CodeCheck.reason, plus not_found, missing_code, already_applied ("" when newly applied)
    message: str
    discount_cents: int = 0
    total_cents: int = 0
    replaced_code: Optional[str] = None
    view: Optional[CartView] = None


def _cart_email(session: Session, cart, email: Optional[str]) -> Optional[str]:
    if email:
        return normalise_email(email)
    if cart is not None and cart.customer_id:
        customer = session.get(Customer, cart.customer_id)
        return customer.email.lower() if customer else None
    return None


def apply_code(session: Session, session_id: str, code: object, now: datetime,
               email: Optional[str] = None) -> CodeResult:
    """Apply a discount code to the session's cart (replacing a code already there).

    Returns a CodeResult; `ok` False carries the exact reason and changes nothing. An invalid email raises
    CartError('invalid_email').
    """
    now = utc_naive(now)
    raw = normalise_code(code)
    if not raw:
        return CodeResult(False, "", "missing_code", "Which discount code would you like to use?")
    cart = find_open_cart(session, session_id)
    email = _cart_email(session, cart, email)
    row = _find_code(session, raw)
    if row is None:
        return CodeResult(False, raw, "not_found", f"I don't recognise the code {raw}. Please check the spelling.")
    lines = cart_lines(session, cart)
    check = check_code(session, row, lines=lines, email=email, now=now)
    if not check.ok:
        return CodeResult(False, row.code, check.reason, check.message)
    current = session.get(CartDiscount, cart.id)
    replaced: Optional[str] = None
    if current is not None and current.discount_code_id == row.id:
        view = build_view(session, cart.session_id, cart, now=now, email=email)
        return CodeResult(True, row.code, "already_applied", f"{row.code} is already applied to your cart.",
                          view.discount_cents, view.total_cents, None, view)
    # -- all checks passed: change the data
    if current is not None:
        old = session.get(DiscountCode, current.discount_code_id)
        replaced = old.code if old else None
        current.discount_code_id = row.id
        current.applied_at = now
    else:
        session.add(CartDiscount(cart_id=cart.id, discount_code_id=row.id, applied_at=now))
    cart.updated_at = now
    session.flush()
    totals = quote_totals(session, lines, discount_code_id=row.id)
    category = _category_name(session, row)
    if row.kind == "free_shipping":
        saving = "free standard shipping"
    else:
        saving = f"{_kind_text(row, category)}, you save {format_money(totals.discount_cents)}"
    message = f"{row.code} applied: {saving}."
    if replaced:
        message += f" It replaces {replaced}: one code per order."
    view = build_view(session, cart.session_id, cart, now=now, email=email, message=message)
    return CodeResult(True, row.code, "", message, view.discount_cents, view.total_cents, replaced, view)


def remove_code(session: Session, session_id: str, *, now: Optional[datetime] = None) -> CodeResult:
    """Take the discount code off the cart (ok False, reason 'no_code', when there is none)."""
    now = utc_naive(now)
    cart = find_open_cart(session, session_id)
    current = session.get(CartDiscount, cart.id) if cart is not None else None
    if current is None:
        return CodeResult(False, "", "no_code", "There's no discount code on your cart.")
    old = session.get(DiscountCode, current.discount_code_id)
    session.delete(current)
    cart.updated_at = now
    session.flush()
    message = f"I've removed {old.code if old else 'the code'} from your cart."
    view = build_view(session, cart.session_id, cart, now=now, message=message)
    return CodeResult(True, old.code if old else "", "", message, 0, view.total_cents, None, view)


# --------------------------------------------------------------------------------------------
# Public promotions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Promotion:
    code: str
    description: str
    kind: str
    value: int
    min_spend_cents: int
    category: Optional[str]
    ends_at: Optional[datetime]
    text: str


def public_promotions(session: Session, now: datetime) -> List[Promotion]:
    """Public codes that can be used right now (started, not ended, not used up), by code."""
    now = utc_naive(now)
    rows = session.execute(
        select(DiscountCode).where(
            DiscountCode.public.is_(True), DiscountCode.customer_id.is_(None),
            or_(DiscountCode.starts_at.is_(None), DiscountCode.starts_at <= now),
            or_(DiscountCode.ends_at.is_(None), DiscountCode.ends_at > now),
            or_(DiscountCode.usage_limit.is_(None), DiscountCode.times_used < DiscountCode.usage_limit),
        ).order_by(DiscountCode.code)
    ).scalars().all()
    promotions = []
    for row in rows:
        category = _category_name(session, row)
        text = f"{row.code}: {_kind_text(row, category)}"
        if row.min_spend_cents:
            text += f" on orders of {format_money(row.min_spend_cents)} or more"
        if row.ends_at is not None:
            text += f" (until {format_day(row.ends_at - timedelta(microseconds=1), now)})"
        promotions.append(Promotion(row.code, row.description, row.kind, row.value, row.min_spend_cents or 0,
                                    category, row.ends_at, text))
    return promotions


# --------------------------------------------------------------------------------------------
# Personal offers
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OfferResult:
    ok: bool  # a usable code is in `code`
    reason: str  # "" | invalid_email | has_orders | no_orders | expired | used
    message: str
    code: Optional[str] = None
    percent: int = 0
    ends_at: Optional[datetime] = None
    newly_issued: bool = False


def _new_code(session: Session, prefix: str) -> str:
    while True:
        candidate = prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))
        if _find_code(session, candidate) is None:
            return candidate


def _offer(session: Session, email: object, now: datetime, kind: str) -> OfferResult:
    now = utc_naive(now)
    try:
        email = normalise_email(email)
    except CartError as error:
        return OfferResult(False, "invalid_email", error.message)
    customer = find_customer(session, email)
    paid = paid_orders_count(session, email)
    first = kind == "first_order"
    percent, days, prefix = (FIRST_ORDER_PERCENT, FIRST_ORDER_DAYS, "FIRST") if first else (
        LOYALTY_PERCENT, LOYALTY_DAYS, "THANKS")
    issued = None
    if customer is not None:
        issued = session.execute(
            select(IssuedOffer).where(IssuedOffer.customer_id == customer.id, IssuedOffer.kind == kind)
        ).scalar_one_or_none()
    if issued is not None:
        code = session.get(DiscountCode, issued.discount_code_id)
        until = format_day(code.ends_at - timedelta(microseconds=1), now) if code.ends_at else ""
        if code.usage_limit is not None and code.times_used >= code.usage_limit:
            return OfferResult(False, "used", f"You've already used your personal code {code.code}.", code.code,
                               code.value, code.ends_at)
        if first and paid:
            return OfferResult(False, "has_orders", f"Your first-order code {code.code} was for your first order, "
                               "and you've ordered since.", code.code, code.value, code.ends_at)
        if code.ends_at is not None and now >= code.ends_at:
            return OfferResult(False, "expired", f"Your personal code {code.code} expired on "
                               f"{format_day(code.ends_at, now)}.", code.code, code.value, code.ends_at)
        return OfferResult(True, "", f"Your personal code is {code.code}: {code.value}% off, valid until {until}.",
                           code.code, code.value, code.ends_at, False)
    if first and paid:
        return OfferResult(False, "has_orders", "The first-order offer is for new customers, and you've ordered "
                                                "with us before.")
    if not first and not paid:
        return OfferResult(False, "no_orders", "The thank-you offer is for customers with a past order; it will be "
                                               "there after your first one.")
    # -- eligible: issue a new personal code
    if customer is None:
        customer = Customer(email=email, created_at=now, preferences={})
        session.add(customer)
        session.flush()
    ends_at = now + timedelta(days=days)
    description = (f"{percent}% off your first order" if first
                   else f"{percent}% off, a thank-you for ordering with us")
    code = DiscountCode(code=_new_code(session, prefix), description=description, kind="percent", value=percent,
                        min_spend_cents=0, starts_at=now, ends_at=ends_at, usage_limit=1, times_used=0,
                        once_per_customer=True, public=False, customer_id=customer.id)
    session.add(code)
    session.flush()
    session.add(IssuedOffer(customer_id=customer.id, kind=kind, discount_code_id=code.id, issued_at=now))
    session.flush()
    until = format_day(ends_at - timedelta(microseconds=1), now)
    return OfferResult(True, "", f"Here's your personal code {code.code}: {percent}% off your "
                       f"{'first order' if first else 'next order'}, valid until {until}.",
                       code.code, percent, ends_at, True)


def first_order_code(session: Session, email: str, now: datetime) -> OfferResult:
    """A personal 10%-off code (30 days) for a customer without paid orders; issued once, idempotent."""
    return _offer(session, email, now, "first_order")


def loyalty_code(session: Session, email: str, now: datetime) -> OfferResult:
    """A personal 15%-off thank-you code (60 days) for a customer with past paid orders; issued once, idempotent."""
    return _offer(session, email, now, "loyalty")


def issue_single_use_code(session: Session, *, prefix: str, percent: int, now: datetime, valid_for: timedelta,
                          description: str, customer_id: Optional[int] = None) -> DiscountCode:
    """A new percent-off code that works once (e.g. a cart reminder's incentive), for one customer when
    `customer_id` is given; `valid_for` from `now`. Counted as used when the order is paid, like every code."""
    now = utc_naive(now)
    code = DiscountCode(code=_new_code(session, prefix), description=description[:255], kind="percent",
                        value=percent, min_spend_cents=0, starts_at=now, ends_at=now + valid_for, usage_limit=1,
                        times_used=0, once_per_customer=True, public=False, customer_id=customer_id)
    session.add(code)
    session.flush()
    return code
