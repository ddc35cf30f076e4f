"""Checkout: what is still missing, the summary with every cost, and placing the order from the cart.

`place_order` turns the session's cart into ONE order with status pending_payment (source "chat",
conversation_id = the session id) inside the caller's unit of work; nothing is committed here. It
re-checks everything first (details, stock, the discount code, today's prices) and refuses with a
`CheckoutRefusal` (shopper-facing `message`, machine `code`) that changes nothing:

* a price changed since the item was added: refused with the new total (`details["new_total_cents"]`)
  unless the shopper already confirmed exactly that total (`confirmed_total_cents`);
* an item sold out or short: refused naming the item;
* a code that no longer applies: refused with the reason and the total without it.

Stock convention (see also shop/payments.py): an order placed here does NOT hold stock. Stock is checked
at placement and taken exactly once, when the payment succeeds (`shop.payments.handle_payment_event`).
Orders placed here are recorded in `checkout_orders`; `holds_stock(session, order)` tells whether an
order's units have left the shelf. shop/orders.py assumes the opposite for other orders (stock leaves when
an order is placed), so use `cancel_order` from this module for cancellations: for an unpaid checkout
order it cancels without putting back stock that was never taken (and without touching the code's usage
count, which is only counted when paid); everything else goes to shop.orders.cancel_order unchanged.

The discount code's usage is counted once, when paid; the cart becomes checked_out only when paid.
Placing again from an unchanged cart returns the same pending order (idempotent); placing from a changed
cart replaces the earlier unpaid order of that cart (it is cancelled, no stock moves).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, func, select, text
from sqlalchemy.orm import Session

from shop.carts import (
    DEFAULT_SHIPPING_METHOD,
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
    session_key,
    utc_naive,
)
from shop.models import Base, Cart, Customer, DiscountCode, Order, OrderItem
from shop.orders import Cancellation, find_order, transition
from shop.orders import cancel_order as _orders_cancel_order
from shop.policy import Policy, countries_text, format_money, load_policy
from shop.promotions import check_code

__all__ = [
    "REQUIREMENTS", "CheckoutDetails", "CheckoutOrder", "CheckoutRefusal", "CheckoutRequirements",
    "CheckoutSummary", "ShippingOption", "cancel_order", "checkout_order", "checkout_requirements",
    "checkout_summary", "holds_stock", "place_order",
]

REQUIREMENTS = ("name", "email", "shipping_address", "shipping_method")
_US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_POSTCODE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{1,9}$")
_ORDER_NUMBER_LOCK = 7_302_001  # PostgreSQL advisory lock key: one order number at a time


class CheckoutOrder(Base):
    """An order placed by shop.checkout: which cart it came from and when its stock was taken."""

    __tablename__ = "checkout_orders"
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    cart_id = Column(Integer, ForeignKey("carts.id"), nullable=False, index=True)
    session_id = Column(String(255), nullable=False, index=True)
    created_at = Column(DateTime, nullable=False)
    stock_taken_at = Column(DateTime, nullable=True)  # set once, when the payment succeeded


class CheckoutRefusal(CartError):
    """A checkout the shop refuses; nothing was changed. Codes: empty_cart, missing_details, invalid_details,
    sold_out, not_enough_stock, not_sold, discount_invalid, price_changed, total_changed."""


# --------------------------------------------------------------------------------------------
# Details
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckoutDetails:
    name: str = ""
    email: str = ""
    address_line: str = ""
    city: str = ""
    postcode: str = ""
    country: str = ""  # ISO code or a name we know ("UK", "Germany"); empty: US
    shipping_method: str = ""  # "standard" | "express" (labels and "express shipping" work too)
    phone: str = ""
    # The total the shopper saw and said yes to; needed again when a price changed since adding.
    confirmed_total_cents: Optional[int] = None

    @classmethod
    def from_mapping(cls, data: Union["CheckoutDetails", Mapping[str, Any], None]) -> "CheckoutDetails":
        if data is None:
            return cls()
        if isinstance(data, CheckoutDetails):
            return data
        known = {f.name for f in fields(cls)}
        values: Dict[str, Any] = {}
        for key, value in data.items():
            if key not in known or value is None:
                continue
            if key == "confirmed_total_cents":
                try:
                    values[key] = int(value)
                except (TypeError, ValueError):
                    continue
            else:
                values[key] = " ".join(str(value).split())
        return cls(**values)

    def merged_over(self, base: "CheckoutDetails") -> "CheckoutDetails":
        """These details, with blanks filled from `base`."""
        values = {}
        for f in fields(self):
            mine = getattr(self, f.name)
            values[f.name] = mine if mine not in ("", None) else getattr(base, f.name)
        return CheckoutDetails(**values)


def _validate(details: CheckoutDetails, policy: Policy) -> Tuple[CheckoutDetails, Dict[str, str], List[str]]:
    """(clean details, problems by requirement, missing requirements)."""
    problems: Dict[str, str] = {}
    missing: List[str] = []
    clean: Dict[str, Any] = {}
    name = details.name.strip()
    if not name:
        missing.append("name")
    elif len(name) < 2 or len(name) > 160:
        problems["name"] = "Please give the full name for the shipping label (2 to 160 characters)."
    clean["name"] = name
    email = details.email.strip()
    if not email:
        missing.append("email")
    else:
        try:
            email = normalise_email(email)
        except CartError as error:
            problems["email"] = error.message
    clean["email"] = email
    address, city, postcode = details.address_line.strip(), details.city.strip(), details.postcode.strip().upper()
    country = details.country.strip() or "US"
    if not (address and city and postcode):
        missing.append("shipping_address")
    else:
        code = policy.shipping.resolve_country(country)
        if not code or not policy.shipping.ships_to(code):
            problems["shipping_address"] = f"Sorry, we don't ship to {country}. {countries_text(policy)}"
        elif len(address) > 255 or len(city) > 120:
            problems["shipping_address"] = "That address is too long for a shipping label."
        elif code == "US" and not _US_ZIP.match(postcode):
            problems["shipping_address"] = "A US ZIP code has five digits, like 97205 (or 97205-1234)."
        elif code != "US" and not _POSTCODE.match(postcode):
            problems["shipping_address"] = "That postcode doesn't look right; please check it."
        else:
            country = code
    clean.update(address_line=address, city=city, postcode=postcode, country=country)
    method = details.shipping_method.strip()
    if not method:
        missing.append("shipping_method")
    else:
        found = policy.shipping.resolve_method(method)
        if found is None:
            labels = " or ".join(m.label.lower() for m in policy.shipping.methods.values())
            problems["shipping_method"] = f"We ship {labels}; which would you like?"
        else:
            method = found.key
    clean["shipping_method"] = method
    clean["phone"] = details.phone.strip()[:40]
    clean["confirmed_total_cents"] = details.confirmed_total_cents
    return CheckoutDetails(**clean), problems, missing


def _from_customer(customer: Customer) -> CheckoutDetails:
    return CheckoutDetails(
        name=" ".join(p for p in (customer.first_name, customer.last_name) if p), email=customer.email.lower(),
        address_line=customer.address_line or "", city=customer.city or "", postcode=customer.postcode or "",
        country=(customer.country or "") if customer.address_line else "", phone=customer.phone or "",
    )


@dataclass(frozen=True)
class CheckoutRequirements:
    missing: Tuple[str, ...]  # in asking order, from REQUIREMENTS
    details: CheckoutDetails  # what is known: given details, then the customer's record
    prefilled: Tuple[str, ...]  # requirements filled from the customer's record
    problems: Mapping[str, str]  # requirement -> what is wrong with the given value
    returning_customer: bool
    needs_verification: bool  # a record exists but this conversation isn't verified for it: nothing pre-filled
    message: str

    @property
    def ready(self) -> bool:
        return not self.missing and not self.problems


_ASK = {
    "name": "What name should go on the shipping label?",
    "email": "Which email address should I send the order confirmation to?",
    "shipping_address": "What's the shipping address (street, city, postcode and country)?",
    "shipping_method": "Standard or express shipping?",
}


def checkout_requirements(session: Session, session_id: str, email: Optional[str] = None, *,
                          details: Union[CheckoutDetails, Mapping[str, Any], None] = None,
                          verified: Optional[bool] = None, now: Optional[datetime] = None) -> CheckoutRequirements:
    """What is still needed to place the order (name, email, shipping address, shipping method).

    A returning customer's name and address are pre-filled from their record only when the conversation is
    verified for that email (`verified=None` asks shop.verification), so an email alone reveals nothing.
    """
    now = utc_naive(now)
    policy = load_policy()
    given = CheckoutDetails.from_mapping(details)
    if email and not given.email:
        given = replace(given, email=str(email))
    cart = find_open_cart(session, session_id)
    if not given.email and cart is not None and cart.customer_id:
        owner = session.get(Customer, cart.customer_id)
        if owner is not None:
            given = replace(given, email=owner.email)
    known, prefilled, returning, needs_verification = given, [], False, False
    try:
        address = normalise_email(given.email) if given.email else None
    except CartError:
        address = None
    customer = find_customer(session, address) if address else None
    if customer is not None:
        returning = True
        if verified is None:
            from shop.verification import verified_email

            verified = verified_email(session, session_id, now) == address
        if verified:
            known = given.merged_over(_from_customer(customer))
            before_clean = _validate(given, policy)[2]
            after_clean = _validate(known, policy)[2]
            prefilled = [r for r in before_clean if r not in after_clean]
        else:
            needs_verification = bool(customer.address_line or customer.first_name)
    clean, problems, missing = _validate(known, policy)
    if problems:
        first = next(r for r in REQUIREMENTS if r in problems)
        message = problems[first]
    elif missing:
        message = _ASK[missing[0]]
    else:
        message = "I have everything I need for your order."
    return CheckoutRequirements(tuple(missing), clean, tuple(prefilled), problems,
                                returning, needs_verification, message)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShippingOption:
    method: str
    label: str
    cents: int  # what this cart would pay for it (0 = free)


@dataclass(frozen=True)
class CheckoutSummary:
    cart: CartView  # priced with the chosen shipping method
    shipping_options: Tuple[ShippingOption, ...]
    free_shipping_over_cents: int
    problems: Tuple[str, ...]  # what blocks placing the order (sold-out lines, a code that no longer applies)

    @property
    def subtotal_cents(self) -> int:
        return self.cart.subtotal_cents

    @property
    def discount_cents(self) -> int:
        return self.cart.discount_cents

    @property
    def shipping_cents(self) -> int:
        return self.cart.shipping_cents

    @property
    def tax_cents(self) -> int:
        return self.cart.tax_cents

    @property
    def total_cents(self) -> int:
        return self.cart.total_cents

    @property
    def ready(self) -> bool:
        return not self.problems and not self.cart.is_empty

    def text(self) -> str:
        lines = [self.cart.text()]
        options = ", ".join(f"{o.label} {'free' if o.cents == 0 else format_money(o.cents)}"
                            for o in self.shipping_options)
        lines.append(f"Shipping options: {options}.")
        lines += self.problems
        return "\n".join(lines)


def checkout_summary(session: Session, session_id: str, shipping_method: str = DEFAULT_SHIPPING_METHOD, *,
                     email: Optional[str] = None, now: Optional[datetime] = None) -> CheckoutSummary:
    """Items, discount, shipping for the chosen method (and what each method would cost), tax and total;
    the same numbers place_order will charge (shop.orders.price_lines)."""
    now = utc_naive(now)
    policy = load_policy()
    cart = find_open_cart(session, session_id)
    view = build_view(session, session_key(session_id), cart, shipping_method=shipping_method, now=now,
                      email=email)
    lines = list(view.lines)
    code_id = None
    if view.discount_code and not view.discount_note:
        code_id = _code_id(session, view.discount_code)
    options = []
    for method in policy.shipping.methods.values():
        totals = quote_totals(session, lines, discount_code_id=code_id, shipping_method=method.key, policy=policy)
        options.append(ShippingOption(method.key, method.label, totals.shipping_cents))
    problems = [f"{line.note}." for line in lines if not line.orderable]
    if view.discount_note:
        problems.append(view.discount_note)
    if view.is_empty:
        problems.append("Your cart is empty.")
    return CheckoutSummary(view, tuple(options), policy.shipping.free_shipping_over_cents, tuple(problems))


def _code_id(session: Session, code: str) -> Optional[int]:
    return session.execute(select(DiscountCode.id).where(DiscountCode.code == code)).scalar_one_or_none()


# --------------------------------------------------------------------------------------------
# Placing the order
# --------------------------------------------------------------------------------------------

def checkout_order(session: Session, order: Order) -> Optional[CheckoutOrder]:
    return session.get(CheckoutOrder, order.id) if order.id is not None else None


def holds_stock(session: Session, order: Order) -> bool:
    """Whether the order's units have left the shelf: checkout orders once paid; other orders (shop.orders'
    convention) from placement until cancelled."""
    record = checkout_order(session, order)
    if record is not None:
        return record.stock_taken_at is not None and order.status != "cancelled"
    return order.status != "cancelled"


def _next_order_number(session: Session) -> str:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ORDER_NUMBER_LOCK})
    last = session.execute(
        select(Order.number).where(Order.number.like("SH-%"))
        .order_by(func.length(Order.number).desc(), Order.number.desc()).limit(1)
    ).scalar_one_or_none()
    try:
        number = int(last.split("-", 1)[1]) + 1 if last else 100001
    except ValueError:
        number = 100001
    while session.execute(select(Order.id).where(Order.number == f"SH-{number}")).first() is not None:
        number += 1
    return f"SH-{number}"


def _refuse(code: str, message: str, **details: Any) -> CheckoutRefusal:
    return CheckoutRefusal(code, message, **details)


def _same_order(order: Order, lines: List[CartLine], details: CheckoutDetails, code_id: Optional[int],
                total: int) -> bool:
    mine = sorted((i.variant_id, i.quantity, i.unit_price_cents) for i in order.items)
    theirs = sorted((l.variant_id, l.quantity, l.unit_price_cents) for l in lines)
    return (mine == theirs and order.total_cents == total and order.discount_code_id == code_id
            and order.email == details.email and order.shipping_name == details.name
            and order.shipping_address == details.address_line and order.shipping_city == details.city
            and order.shipping_postcode == details.postcode and order.shipping_country == details.country
            and order.shipping_method == details.shipping_method)


def _may_fill_in(session: Session, cart: Cart, customer: Customer, email: str, now: datetime) -> bool:
    """Whether this checkout may complete the customer's record (blank fields only): a record created in this
    shopping session, or a conversation verified for the email. An email alone never edits somebody's record."""
    if customer.id is None or (cart.customer_id == customer.id and customer.created_at >= cart.created_at):
        return True
    from shop.verification import verified_email

    return verified_email(session, cart.session_id, now) == email


def place_order(session: Session, session_id: str, details: Union[CheckoutDetails, Mapping[str, Any]],
                now: datetime) -> Order:
    """Create a pending_payment order from the session's cart in the caller's transaction (see module doc)."""
    now = utc_naive(now)
    policy = load_policy()
    cart = find_open_cart(session, session_id)
    lines = cart_lines(session, cart)
    if cart is None or not lines:
        raise _refuse("empty_cart", "Your cart is empty, so there's nothing to order yet.")
    clean, problems, missing = _validate(CheckoutDetails.from_mapping(details), policy)
    if missing:
        raise _refuse("missing_details", _ASK[missing[0]], missing=missing)
    if problems:
        first = next(r for r in REQUIREMENTS if r in problems)
        raise _refuse("invalid_details", problems[first], problems=problems)
    # stock: the shelf now (nothing is taken until the payment succeeds)
    for line in lines:
        if line.available <= 0:
            why = "isn't sold any more" if "no longer sold" in line.note else "just sold out"
            raise _refuse("sold_out", f"Sorry, {line.label} {why}. Please remove it from your cart to order the "
                                      "rest.", variant_id=line.variant_id, item=line.label)
        if line.available < line.quantity:
            verb = "is" if line.available == 1 else "are"
            raise _refuse("not_enough_stock", f"Sorry, only {line.available} of {line.label} {verb} left; you have "
                                              f"{line.quantity} in your cart.", variant_id=line.variant_id,
                          item=line.label, available=line.available)
    # the code, checked with the order's email
    applied = session.get(CartDiscount, cart.id)
    code = session.get(DiscountCode, applied.discount_code_id) if applied else None
    code_id = None
    if code is not None:
        check = check_code(session, code, lines=lines, email=clean.email, now=now)
        if not check.ok:
            without = quote_totals(session, lines, shipping_method=clean.shipping_method, policy=policy)
            raise _refuse("discount_invalid", f"{check.message} Without the code your total would be "
                                              f"{format_money(without.total_cents)}. Shall I remove the code?",
                          reason=check.reason, discount_code=code.code, new_total_cents=without.total_cents)
        code_id = code.id
    totals = quote_totals(session, lines, discount_code_id=code_id, shipping_method=clean.shipping_method,
                          policy=policy)
    changed = [line for line in lines if line.price_changed]
    confirmed = clean.confirmed_total_cents
    if changed and confirmed != totals.total_cents:
        what = "; ".join(f"{l.label} is now {format_money(l.unit_price_cents)} (was {format_money(l.added_price_cents)})"
                         for l in changed)
        raise _refuse("price_changed", f"A price changed since you added it: {what}. Your new total is "
                                       f"{format_money(totals.total_cents)}. Shall I place the order at that total?",
                      new_total_cents=totals.total_cents, items=[l.label for l in changed])
    if confirmed is not None and confirmed != totals.total_cents:
        raise _refuse("total_changed", f"Your total is now {format_money(totals.total_cents)} (you confirmed "
                                       f"{format_money(confirmed)}). Shall I place the order at the new total?",
                      new_total_cents=totals.total_cents)
    # an unpaid order already placed from this cart: the same one again, or replaced
    earlier = session.execute(
        select(Order).join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
        .where(CheckoutOrder.cart_id == cart.id, Order.status == "pending_payment").order_by(Order.id)
        .with_for_update(of=Order)
    ).scalars().all()
    for order in earlier:
        if _same_order(order, lines, clean, code_id, totals.total_cents):
            return order
    # -- all checks passed: change the data
    for order in earlier:
        transition(order, "cancelled")  # superseded; it never held stock
    customer = find_customer(session, clean.email)
    if customer is None:
        customer = Customer(email=clean.email, created_at=now, preferences={})
        session.add(customer)
    if _may_fill_in(session, cart, customer, clean.email, now):
        first, _, last = clean.name.partition(" ")
        if not customer.first_name and not customer.last_name:
            customer.first_name, customer.last_name = first[:80], last[:80]
        if not customer.address_line:
            customer.address_line, customer.city = clean.address_line, clean.city
            customer.postcode, customer.country = clean.postcode, clean.country
        if not customer.phone and clean.phone:
            customer.phone = clean.phone
    session.flush()
    cart.customer_id = customer.id
    order = Order(
        number=_next_order_number(session), customer_id=customer.id, email=clean.email, status="pending_payment",
        shipping_name=clean.name, shipping_address=clean.address_line, shipping_city=clean.city,
        shipping_postcode=clean.postcode, shipping_country=clean.country, shipping_method=clean.shipping_method,
        discount_code_id=code_id, source="chat", conversation_id=cart.session_id, placed_at=now, updated_at=now,
    )
    for line in lines:
        order.items.append(OrderItem(variant_id=line.variant_id, product_title=line.product_title,
                                     variant_label=line.variant_label, quantity=line.quantity,
                                     unit_price_cents=line.unit_price_cents))
    session.add(order)
    session.flush()
    from shop.orders import price_lines

    final = price_lines(session, order, {item.id: item.quantity for item in order.items}, policy)
    if final != totals:  # one pricing function, the same inputs: cannot differ
        raise RuntimeError(f"order {order.number} priced {final} but the cart quoted {totals}")
    order.subtotal_cents, order.discount_cents = final.subtotal_cents, final.discount_cents
    order.shipping_cents, order.tax_cents, order.total_cents = final.shipping_cents, final.tax_cents, final.total_cents
    session.add(CheckoutOrder(order_id=order.id, cart_id=cart.id, session_id=cart.session_id, created_at=now))
    cart.updated_at = now
    session.flush()
    return order


# --------------------------------------------------------------------------------------------
# Cancelling
# --------------------------------------------------------------------------------------------

def cancel_order(session: Session, number: str, *, owner_email: Optional[str] = None) -> Cancellation:
    """shop.orders.cancel_order, made right for unpaid checkout orders: they never held stock nor counted a
    code use, so cancelling one moves neither; nothing was charged. The cart stays as it is."""
    order = find_order(session, number, owner_email=owner_email, for_update=True)
    record = checkout_order(session, order)
    if order.status != "pending_payment" or record is None or record.stock_taken_at is not None:
        return _orders_cancel_order(session, number, owner_email=owner_email)
    transition(order, "cancelled")
    order.updated_at = utc_naive(None)
    session.flush()
    return Cancellation(order.number, 0, None, "",
                        f"Order {order.number} is cancelled. It hadn't been paid, so nothing was charged.")
