"""Orders: lookup in plain words and the changes a shopper may make, guarded by the status lifecycle.

Every function takes an open SQLAlchemy session (the caller's unit of work, e.g.
`shop.db.session_scope()`, commits) and plain values. A request the shop must refuse raises an
`OrderRefusal` (or a subclass) carrying a machine-readable `code`, a shopper-facing `message` and,
where useful, a `suggestion` ("start_return", "cancel_order", ...). Every check runs before the
first change, so a refusal leaves the data exactly as it was.

These functions do not check who is asking: the caller first verifies the shopper
(`shop.verification`) and then passes the verified email as `owner_email`, which makes an order
of somebody else indistinguishable from an order that does not exist.

Stock convention: an order that holds stock (`shop.checkout.holds_stock`: other orders from the moment
they are placed, checkout orders once paid) gets its units back on the variant when a quantity is lowered,
a line removed or the order cancelled, and takes more when a quantity is raised. An order that holds no
stock yet moves none; a discount code's use is counted (and given back on cancelling) the same way.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import List, Mapping, Optional, Tuple

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from shop.models import Customer, DiscountCode, Order, OrderItem, Product, Refund, Variant
from shop.policy import Policy, countries_text, format_money, load_policy, refund_timing_text
from shop.seed import TAX_RATE_PERCENT

__all__ = [
    "ADDRESS_CHANGEABLE", "ALLOWED_TRANSITIONS", "CANCELLABLE", "ITEMS_CHANGEABLE", "MAX_LINE_QUANTITY",
    "STATUS_TEXT", "AddressChange", "Cancellation", "InvalidOrderNumber", "OrderChange", "OrderLine",
    "OrderNotFound", "OrderRefusal", "OrderSummary", "Totals", "can_transition", "cancel_order",
    "change_quantity", "change_shipping_address", "find_order", "format_date", "normalise_order_number",
    "order_summary", "orders_for_customer", "price_lines", "remove_line", "set_status", "transition",
]

# --------------------------------------------------------------------------------------------
# The lifecycle
# --------------------------------------------------------------------------------------------

ALLOWED_TRANSITIONS: Mapping[str, frozenset] = {
    "pending_payment": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"packed", "cancelled"}),
    "packed": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset({"return_requested"}),
    # a second return on the same order stays return_requested; a rejected return goes back to delivered
    "return_requested": frozenset({"return_requested", "returned", "delivered"}),
    "returned": frozenset({"refunded", "return_requested"}),
    "refunded": frozenset({"return_requested"}),  # another item of a partly returned order
    "cancelled": frozenset(),
}
ADDRESS_CHANGEABLE = frozenset({"pending_payment", "paid", "packed"})  # before shipped
ITEMS_CHANGEABLE = frozenset({"pending_payment", "paid"})  # before packed
CANCELLABLE = frozenset({"pending_payment", "paid", "packed"})  # before shipped
SHIPPED_OR_LATER = frozenset({"shipped", "delivered", "return_requested", "returned", "refunded"})
DELIVERED_OR_LATER = frozenset({"delivered", "return_requested", "returned", "refunded"})
MAX_LINE_QUANTITY = 10

STATUS_TEXT: Mapping[str, str] = {
    "pending_payment": "waiting for payment",
    "paid": "paid and being prepared",
    "packed": "packed and about to ship",
    "shipped": "shipped and on its way",
    "delivered": "delivered",
    "cancelled": "cancelled",
    "return_requested": "delivered, with a return in progress",
    "returned": "returned (we received the items back)",
    "refunded": "refunded",
}


def can_transition(current: str, new: str) -> bool:
    return new in ALLOWED_TRANSITIONS.get(current, frozenset())


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------

class OrderRefusal(Exception):
    """A request the shop refuses; nothing was changed. `message` is ready to show the shopper."""

    def __init__(self, code: str, message: str, *, order_number: Optional[str] = None,
                 suggestion: Optional[str] = None, details: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.order_number = order_number
        self.suggestion = suggestion
        self.details = details or {}

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "order_number": self.order_number,
                "suggestion": self.suggestion, "details": self.details}


class InvalidOrderNumber(OrderRefusal):
    def __init__(self, text: str):
        super().__init__(
            "invalid_order_number",
            f"\"{text.strip()}\" doesn't look like one of our order numbers. They look like SH-100001 "
            "(SH followed by six digits) and are in your order confirmation email.",
            details={"input": text},
        )


class OrderNotFound(OrderRefusal):
    def __init__(self, number: str):
        super().__init__(
            "order_not_found",
            f"I couldn't find an order {number} for you. Please check the number in your confirmation email.",
            order_number=number,
        )


def _refuse(code: str, message: str, order: Order, suggestion: Optional[str] = None, **details) -> OrderRefusal:
    return OrderRefusal(code, message, order_number=order.number, suggestion=suggestion, details=details)


# --------------------------------------------------------------------------------------------
# Order numbers and lookup
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^#?\s*(?:SH)?\s*[-_#]?\s*(\d{6,9})$", re.IGNORECASE)


def normalise_order_number(text: object) -> str:
    """'sh100001', '#SH-100001', 'SH 100001', '100001' -> 'SH-100001'; raises InvalidOrderNumber otherwise."""
    raw = "" if text is None else str(text)
    match = _NUMBER.match(raw.strip())
    if not match:
        raise InvalidOrderNumber(raw)
    return f"SH-{match.group(1)}"


def _owned_by(order: Order, email: str) -> bool:
    wanted = email.strip().lower()
    if (order.email or "").strip().lower() == wanted:
        return True
    return bool(order.customer and (order.customer.email or "").strip().lower() == wanted)


def find_order(session: Session, number: str, *, owner_email: Optional[str] = None,
               for_update: bool = False) -> Order:
    """The order with this number (normalised), or OrderNotFound; with owner_email, only that shopper's."""
    normalised = normalise_order_number(number)
    query = select(Order).where(Order.number == normalised)
    if for_update:
        query = query.with_for_update()
    order = session.execute(query).scalar_one_or_none()
    if order is None or (owner_email is not None and not _owned_by(order, owner_email)):
        raise OrderNotFound(normalised)
    return order


def format_date(value: Optional[date]) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    return f"{value:%A}, {value:%B} {value.day}, {value.year}"


def _today(today: Optional[date]) -> date:
    if today is None:
        return datetime.utcnow().date()
    return today.date() if isinstance(today, datetime) else today


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderLine:
    id: int
    product_title: str
    variant_label: str
    quantity: int
    unit_price_cents: int

    @property
    def line_total_cents(self) -> int:
        return self.quantity * self.unit_price_cents

    @property
    def text(self) -> str:
        label = f" ({self.variant_label})" if self.variant_label else ""
        return f"{self.quantity} x {self.product_title}{label}, {format_money(self.line_total_cents)}"


@dataclass(frozen=True)
class OrderSummary:
    number: str
    status: str
    status_text: str
    placed_at: datetime
    items: Tuple[OrderLine, ...]
    subtotal_cents: int
    discount_cents: int
    shipping_cents: int
    tax_cents: int
    total_cents: int
    shipping_method: str
    shipping_name: str
    shipping_address: str  # one line: street, city, postcode, country
    carrier: Optional[str]
    tracking_number: Optional[str]
    tracking_url: Optional[str]
    estimated_delivery: Optional[date]
    delivered_at: Optional[datetime]
    is_late: bool
    next_step: str
    can_change_address: bool
    can_change_items: bool
    can_cancel: bool
    can_return: bool  # delivered and still inside the return window (per-item rules: shop.returns)
    return_deadline: Optional[date]

    def text(self) -> str:
        """The whole summary as plain text, for channels without rich messages."""
        lines = [f"Order {self.number} (placed {format_date(self.placed_at)}) is {self.status_text}."]
        lines += [f"- {line.text}" for line in self.items]
        lines.append(f"Total: {format_money(self.total_cents)}")
        if self.carrier and self.tracking_number:
            track = f"Carrier: {self.carrier}, tracking number {self.tracking_number}"
            lines.append(track + (f" ({self.tracking_url})" if self.tracking_url else ""))
        lines.append(self.next_step)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-friendly (dates as ISO strings), e.g. for a slot or an API response."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, (date, datetime)):
                data[key] = value.isoformat()
        data["items"] = [dict(asdict(line), line_total_cents=line.line_total_cents) for line in self.items]
        return data


def _address_line(order: Order, policy: Policy) -> str:
    country = policy.shipping.countries.get(order.shipping_country, order.shipping_country)
    parts = [order.shipping_address, order.shipping_city, order.shipping_postcode]
    if country:
        parts.append(country[4:] if country.startswith("the ") else country)
    return ", ".join(p for p in parts if p)


def _return_deadline(order: Order, policy: Policy) -> Optional[date]:
    if order.status not in DELIVERED_OR_LATER or order.delivered_at is None:
        return None
    return order.delivered_at.date() + timedelta(days=policy.returns.window_days)


def _next_step(order: Order, policy: Policy, today: date, late: bool, deadline: Optional[date]) -> str:
    status = order.status
    carrier = order.carrier or "the carrier"
    if status == "pending_payment":
        return ("We're still waiting for your payment. As soon as it's confirmed we'll prepare your order; "
                "until it's packed you can change the items or the address, or cancel it.")
    if status == "paid":
        return ("We're preparing your order for dispatch. Until it's packed you can still change the items; "
                "until it ships you can change the delivery address or cancel it.")
    if status == "packed":
        return ("Your order is packed and will be handed to the carrier shortly. You can still change the "
                "delivery address or cancel it until it ships.")
    if status == "shipped":
        if late:
            return (f"It's running late: {carrier} estimated {format_date(order.estimated_delivery)}. "
                    "Parcels usually turn up within two business days of the estimate; if it hasn't arrived "
                    "by then, contact us and we'll send a replacement or refund you.")
        if order.estimated_delivery:
            return f"It's on its way with {carrier} and should arrive by {format_date(order.estimated_delivery)}."
        return f"It's on its way with {carrier}."
    if status == "delivered":
        when = f"It was delivered on {format_date(order.delivered_at)}. "
        if deadline and today <= deadline:
            return when + f"If something isn't right, you can return it until {format_date(deadline)}."
        if deadline:
            return when + f"The {policy.returns.window_days}-day return window closed on {format_date(deadline)}."
        return when
    if status == "cancelled":
        return "This order was cancelled; any payment is refunded to your original payment method."
    if status == "return_requested":
        return ("We're waiting for your return to reach our warehouse. " + refund_timing_text("return", policy))
    if status == "returned":
        return "We've received your return and your refund is being processed. " + refund_timing_text("return", policy)
    if status == "refunded":
        return "Your refund has been issued. " + (
            f"If something else from this order isn't right, you can still return it until {format_date(deadline)}."
            if deadline and today <= deadline else ""
        )
    return ""


def _summarise(order: Order, policy: Policy, today: date) -> OrderSummary:
    late = bool(
        order.status in ("paid", "packed", "shipped") and order.estimated_delivery is not None
        and today > order.estimated_delivery
    )
    deadline = _return_deadline(order, policy)
    return OrderSummary(
        number=order.number, status=order.status, status_text=STATUS_TEXT.get(order.status, order.status),
        placed_at=order.placed_at,
        items=tuple(OrderLine(i.id, i.product_title, i.variant_label or "", i.quantity, i.unit_price_cents)
                    for i in order.items),
        subtotal_cents=order.subtotal_cents, discount_cents=order.discount_cents,
        shipping_cents=order.shipping_cents, tax_cents=order.tax_cents, total_cents=order.total_cents,
        shipping_method=order.shipping_method, shipping_name=order.shipping_name,
        shipping_address=_address_line(order, policy), carrier=order.carrier,
        tracking_number=order.tracking_number, tracking_url=policy.tracking_url(order.carrier, order.tracking_number),
        estimated_delivery=order.estimated_delivery, delivered_at=order.delivered_at, is_late=late,
        next_step=_next_step(order, policy, today, late, deadline),
        can_change_address=order.status in ADDRESS_CHANGEABLE, can_change_items=order.status in ITEMS_CHANGEABLE,
        can_cancel=order.status in CANCELLABLE,
        can_return=bool(deadline and today <= deadline and order.status != "cancelled"),
        return_deadline=deadline,
    )


def order_summary(session: Session, number: str, *, today: Optional[date] = None,
                  owner_email: Optional[str] = None) -> OrderSummary:
    """Status in plain words, items, tracking (with the carrier's link), estimate, lateness and next step."""
    order = find_order(session, number, owner_email=owner_email)
    return _summarise(order, load_policy(), _today(today))


def orders_for_customer(session: Session, email: str, *, limit: Optional[int] = None,
                        today: Optional[date] = None) -> List[OrderSummary]:
    """The shopper's orders (by order email or account email, case-insensitive), most recent first."""
    wanted = (email or "").strip().lower()
    if not wanted:
        return []
    query = (
        select(Order).outerjoin(Customer, Order.customer_id == Customer.id)
        .where(or_(func.lower(Order.email) == wanted, func.lower(Customer.email) == wanted))
        .options(selectinload(Order.items))
        .order_by(Order.placed_at.desc(), Order.id.desc())
    )
    if limit:
        query = query.limit(limit)
    policy, day = load_policy(), _today(today)
    return [_summarise(order, policy, day) for order in session.execute(query).scalars().unique()]


# --------------------------------------------------------------------------------------------
# Status changes (back office, payments, fulfilment, returns)
# --------------------------------------------------------------------------------------------

def transition(order: Order, new_status: str) -> None:
    """Move an order along the lifecycle; OrderRefusal('invalid_transition') for a move the table forbids."""
    if not can_transition(order.status, new_status):
        raise _refuse(
            "invalid_transition",
            f"Order {order.number} is {STATUS_TEXT.get(order.status, order.status)}, so it can't become "
            f"{STATUS_TEXT.get(new_status, new_status)}.",
            order, current=order.status, requested=new_status,
        )
    order.status = new_status


def set_status(session: Session, number: str, new_status: str, *, now: Optional[datetime] = None,
               carrier: Optional[str] = None, tracking_number: Optional[str] = None,
               estimated_delivery: Optional[date] = None) -> Order:
    """Back-office move (paid, packed, shipped with carrier + tracking, delivered) checked against the table."""
    order = find_order(session, number, for_update=True)
    if new_status == "cancelled":
        raise _refuse("use_cancel_order", "Use cancel_order to cancel an order (it also starts the refund).", order)
    if new_status == "shipped" and not (carrier or order.carrier):
        raise _refuse("carrier_required", f"Order {order.number} needs a carrier to be marked as shipped.", order)
    transition(order, new_status)
    if new_status == "shipped":
        order.carrier = carrier or order.carrier
        order.tracking_number = tracking_number or order.tracking_number
        order.estimated_delivery = estimated_delivery or order.estimated_delivery
    if new_status == "delivered" and order.delivered_at is None:
        order.delivered_at = now or datetime.utcnow()
    session.flush()
    return order


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Totals:
    subtotal_cents: int
    discount_cents: int
    shipping_cents: int
    tax_cents: int
    total_cents: int
    code_dropped: bool = False  # a discount code no longer applies (its minimum spend is not met)
    notes: Tuple[str, ...] = field(default=())


def price_lines(session: Session, order: Order, quantities: Mapping[int, int],
                policy: Optional[Policy] = None) -> Totals:
    """Totals of `order` if its lines had these quantities (order_item_id -> quantity; missing = removed).

    Same rules as checkout and the demo data: the discount code is re-applied (percent, fixed or free
    shipping, with its minimum spend and category), shipping by method with free shipping over the
    threshold, tax on the discounted amount, rounded half up.
    """
    policy = policy or load_policy()
    lines = [(item, quantities[item.id]) for item in order.items if quantities.get(item.id)]
    subtotal = sum(item.unit_price_cents * qty for item, qty in lines)
    code = session.get(DiscountCode, order.discount_code_id) if order.discount_code_id else None
    discount, free_shipping, dropped = 0, False, False
    notes: List[str] = []
    if code is not None:
        if subtotal < (code.min_spend_cents or 0):
            dropped = True
            notes.append(f"code {code.code} needs a minimum spend of {format_money(code.min_spend_cents)}")
        elif code.kind == "free_shipping":
            free_shipping = True
        else:
            base = subtotal
            if code.category_id is not None:
                base = sum(item.unit_price_cents * qty for item, qty in lines if _category_id(session, item) == code.category_id)
            if code.kind == "fixed":
                discount = min(code.value, base)
            elif code.kind == "percent":
                discount = base * code.value // 100
    elif order.discount_cents and order.subtotal_cents:
        # a discount without a code (e.g. imported orders): keep it in proportion
        discount = order.discount_cents * subtotal // order.subtotal_cents
    if order.shipping_method in policy.shipping.methods:
        shipping = policy.shipping.shipping_cost_cents(order.shipping_method, subtotal - discount, free_shipping)
    else:
        shipping = order.shipping_cents
    tax = ((subtotal - discount) * TAX_RATE_PERCENT + 50) // 100
    return Totals(subtotal, discount, shipping, tax, subtotal - discount + shipping + tax, dropped, tuple(notes))


def _category_id(session: Session, item: OrderItem) -> Optional[int]:
    if item.variant_id is None:
        return None
    return session.execute(
        select(Product.category_id).join(Variant, Variant.product_id == Product.id).where(Variant.id == item.variant_id)
    ).scalar_one_or_none()


def _holds_stock(session: Session, order: Order) -> bool:
    from shop.checkout import holds_stock  # shop.checkout builds on this module

    return holds_stock(session, order)


def _apply_totals(order: Order, totals: Totals) -> None:
    order.subtotal_cents = totals.subtotal_cents
    order.discount_cents = totals.discount_cents
    order.shipping_cents = totals.shipping_cents
    order.tax_cents = totals.tax_cents
    order.total_cents = totals.total_cents


# --------------------------------------------------------------------------------------------
# Changes
# --------------------------------------------------------------------------------------------

def _not_before_shipping(order: Order, what: str, policy: Policy) -> OrderRefusal:
    """The refusal for a change that is only possible before the order ships."""
    if order.status == "cancelled":
        return _refuse("order_cancelled", f"Order {order.number} was cancelled, so {what}.", order)
    if order.status == "shipped":
        carrier = order.carrier or "the carrier"
        return _refuse(
            "already_shipped",
            f"Order {order.number} has already shipped with {carrier}, so {what}. Once it arrives you can return "
            f"anything you don't want within {policy.returns.window_days} days of delivery.",
            order, suggestion="start_return",
        )
    deadline = _return_deadline(order, policy)
    delivered = f" on {format_date(order.delivered_at)}" if order.delivered_at else ""
    return _refuse(
        "already_delivered",
        f"Order {order.number} was delivered{delivered}, so {what}. You can return items within "
        f"{policy.returns.window_days} days of delivery" + (f" (until {format_date(deadline)})." if deadline else "."),
        order, suggestion="start_return",
    )


@dataclass(frozen=True)
class AddressChange:
    order_number: str
    old_address: str
    new_address: str
    message: str


_US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_POSTCODE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{1,9}$")


def change_shipping_address(session: Session, number: str, *, address_line: str, city: str, postcode: str,
                            country: Optional[str] = None, name: Optional[str] = None,
                            owner_email: Optional[str] = None) -> AddressChange:
    """New delivery address, only before the order ships; the country must be one we ship to."""
    policy = load_policy()
    order = find_order(session, number, owner_email=owner_email, for_update=True)
    if order.status not in ADDRESS_CHANGEABLE:
        raise _not_before_shipping(order, "I can't change its delivery address any more", policy)

    def bad(field_name: str, message: str) -> OrderRefusal:
        return _refuse("invalid_address", message, order, field=field_name)

    address_line = " ".join((address_line or "").split())
    city = " ".join((city or "").split())
    postcode = " ".join((postcode or "").upper().split())
    name = " ".join((name or "").split()) or order.shipping_name
    if not address_line or len(address_line) > 255:
        raise bad("address_line", "Please give the street and house number of the new address.")
    if not city or len(city) > 120:
        raise bad("city", "Please give the town or city of the new address.")
    if len(name) > 160:
        raise bad("name", "That name is too long for a shipping label (160 characters at most).")
    code = order.shipping_country if not country else policy.shipping.resolve_country(country)
    if not code or not policy.shipping.ships_to(code):
        raise _refuse("country_not_shipped", f"Sorry, we don't ship to {country}. {countries_text(policy)}",
                      order, field="country")
    if code == "US" and not _US_ZIP.match(postcode):
        raise bad("postcode", "A US ZIP code has five digits, like 97205 (or 97205-1234).")
    if code != "US" and not _POSTCODE.match(postcode):
        raise bad("postcode", "That postcode doesn't look right; please check it.")
    old = _address_line(order, policy)
    order.shipping_name = name
    order.shipping_address = address_line
    order.shipping_city = city
    order.shipping_postcode = postcode
    order.shipping_country = code
    session.flush()
    new = _address_line(order, policy)
    return AddressChange(order.number, old, new, f"Done: order {order.number} will now be delivered to {name}, {new}.")


@dataclass(frozen=True)
class OrderChange:
    order_number: str
    action: str  # "quantity_changed" | "line_removed" | "unchanged"
    item_title: str
    old_quantity: int
    new_quantity: int
    old_total_cents: int
    new_total_cents: int
    refund_cents: int  # > 0 when a paid order got cheaper: a refund of the difference was started
    message: str
    notes: Tuple[str, ...] = ()


def _item_on_order(order: Order, item_id: object) -> OrderItem:
    try:
        wanted = int(item_id)
    except (TypeError, ValueError):
        wanted = None
    for item in order.items:
        if item.id == wanted:
            return item
    raise _refuse("item_not_on_order", f"That item isn't on order {order.number}.", order, item_id=item_id)


def _items_gate(order: Order, policy: Policy) -> None:
    if order.status in ITEMS_CHANGEABLE:
        return
    if order.status == "packed":
        raise _refuse(
            "already_packed",
            f"Order {order.number} is already packed, so I can't change its items any more. You can still "
            "cancel it before it ships, or return items once it arrives.",
            order, suggestion="cancel_order",
        )
    raise _not_before_shipping(order, "I can't change its items any more", policy)


def _change_lines(session: Session, order: Order, item: OrderItem, new_qty: int, policy: Policy) -> OrderChange:
    """Validate, then apply a new quantity (0 removes the line) with totals, stock and refund."""
    old_qty = item.quantity
    delta = new_qty - old_qty
    label = item.product_title + (f" ({item.variant_label})" if item.variant_label else "")
    if delta == 0:
        return OrderChange(order.number, "unchanged", label, old_qty, new_qty, order.total_cents,
                           order.total_cents, 0, f"Order {order.number} already has {old_qty} x {label}.")
    if new_qty == 0 and len(order.items) == 1:
        raise _refuse(
            "last_item",
            f"{label} is the only item on order {order.number}, so removing it would leave an empty order. "
            "Would you like to cancel the order instead?",
            order, suggestion="cancel_order",
        )
    variant = session.get(Variant, item.variant_id) if item.variant_id else None
    if delta > 0:
        if order.status != "pending_payment":
            raise _refuse(
                "paid_order_increase",
                f"Order {order.number} is already paid, so I can't add more to it. You can place a new order "
                "for the extra items.",
                order, suggestion="new_order",
            )
        if variant is None:
            raise _refuse("no_longer_available", f"{label} is no longer available, so I can't add more.", order)
        held = _holds_stock(session, order)
        if variant.stock < (delta if held else new_qty):  # an order holding no stock yet needs all of it
            raise _refuse(
                "not_enough_stock",
                f"Only {variant.stock} {'more ' if held else ''}of {label} "
                f"{'is' if variant.stock == 1 else 'are'} in stock.",
                order, available=variant.stock,
            )
    quantities = {i.id: i.quantity for i in order.items}
    quantities[item.id] = new_qty
    totals = price_lines(session, order, quantities, policy)
    old_total = order.total_cents
    paid = order.status != "pending_payment"
    if paid and totals.total_cents > old_total:
        raise _refuse(
            "total_would_increase",
            f"That change would raise the total of your paid order ({'; '.join(totals.notes) or 'discount lost'}), "
            "so I can't make it here. You could cancel the order and place a new one, or contact us.",
            order, suggestion="contact_support",
        )
    # -- all checks passed: change the data
    if variant is not None and _holds_stock(session, order):
        variant.stock -= delta
    if new_qty == 0:
        order.items.remove(item)
    else:
        item.quantity = new_qty
    _apply_totals(order, totals)
    refund = old_total - totals.total_cents if paid else 0
    if refund > 0:
        order.refunds.append(Refund(amount_cents=refund, status="pending", method="original_payment"))
    session.flush()
    action = "line_removed" if new_qty == 0 else "quantity_changed"
    what = f"removed {label}" if new_qty == 0 else f"changed {label} to {new_qty}"
    message = f"Done: I {what} on order {order.number}. The new total is {format_money(totals.total_cents)}."
    if refund > 0:
        message += f" We're refunding the difference of {format_money(refund)}. " + refund_timing_text("cancellation", policy)
    elif not paid and delta:
        message += " Please pay the new total to complete your order."
    if totals.code_dropped:
        message += f" Note: {'; '.join(totals.notes)}, so it no longer applies."
    return OrderChange(order.number, action, label, old_qty, new_qty, old_total, totals.total_cents,
                       max(refund, 0), message, totals.notes)


def change_quantity(session: Session, number: str, item_id: int, quantity: int, *,
                    owner_email: Optional[str] = None) -> OrderChange:
    """Set a line's quantity (1..MAX_LINE_QUANTITY; 0 removes it), only before the order is packed.

    Paid orders may only get cheaper (the difference is refunded); raising a quantity needs an unpaid order.
    """
    policy = load_policy()
    order = find_order(session, number, owner_email=owner_email, for_update=True)
    _items_gate(order, policy)
    item = _item_on_order(order, item_id)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        try:
            quantity = int(str(quantity).strip())
        except ValueError:
            raise _refuse("invalid_quantity", "Please give the quantity as a whole number.", order) from None
    if quantity < 0 or quantity > MAX_LINE_QUANTITY:
        raise _refuse("invalid_quantity", f"The quantity must be between 1 and {MAX_LINE_QUANTITY}.", order)
    return _change_lines(session, order, item, quantity, policy)


def remove_line(session: Session, number: str, item_id: int, *, owner_email: Optional[str] = None) -> OrderChange:
    """Remove a line before the order is packed; the last line is refused with suggestion 'cancel_order'."""
    policy = load_policy()
    order = find_order(session, number, owner_email=owner_email, for_update=True)
    _items_gate(order, policy)
    item = _item_on_order(order, item_id)
    return _change_lines(session, order, item, 0, policy)


@dataclass(frozen=True)
class Cancellation:
    order_number: str
    refund_cents: int  # 0 when nothing was paid
    refund_id: Optional[int]
    refund_timing: str  # "" when nothing is refunded
    message: str


def cancel_order(session: Session, number: str, *, owner_email: Optional[str] = None) -> Cancellation:
    """Cancel before the order ships; a paid order gets a pending refund of what was paid.

    Shipped or delivered orders are refused with suggestion 'start_return'.
    """
    policy = load_policy()
    order = find_order(session, number, owner_email=owner_email, for_update=True)
    if order.status == "cancelled":
        raise _refuse("already_cancelled", f"Order {order.number} is already cancelled.", order)
    if order.status not in CANCELLABLE:
        raise _not_before_shipping(order, "it can't be cancelled any more", policy)
    paid = order.status != "pending_payment"
    amount = max(order.total_cents, 0) if paid else 0  # earlier partial refunds already left the total
    # -- all checks passed: change the data
    held = _holds_stock(session, order)
    for item in order.items if held else ():
        if item.variant_id is not None:
            variant = session.get(Variant, item.variant_id)
            if variant is not None:
                variant.stock += item.quantity
    if order.discount_code_id and held:
        code = session.get(DiscountCode, order.discount_code_id)
        if code is not None and code.times_used:
            code.times_used -= 1
    transition(order, "cancelled")
    refund = None
    if amount > 0:
        refund = Refund(amount_cents=amount, status="pending", method="original_payment")
        order.refunds.append(refund)
    session.flush()
    if amount > 0:
        timing = refund_timing_text("cancellation", policy)
        message = (f"Order {order.number} is cancelled. I've started a refund of {format_money(amount)}. {timing}")
    else:
        timing = ""
        message = f"Order {order.number} is cancelled. It hadn't been paid, so nothing was charged."
    return Cancellation(order.number, amount, refund.id if refund else None, timing, message)
