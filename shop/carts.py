"""Shopping carts: one open cart per shopper session (a chat conversation id or a web session id).

Every function takes an open SQLAlchemy session (the caller's unit of work commits) and plain values.
A request the shop refuses raises a `CartError` with a machine-readable `code` and a shopper-facing
`message`; every check runs before the first change, so a refusal leaves the data as it was.

Rules:

* only published variants that are in stock can be added, at most what is in stock and at most
  MAX_LINE_QUANTITY (20) of one variant; quantities must be whole numbers;
* a line keeps the price it was added at (`CartItem.unit_price_cents`). When the variant's price has
  changed since, `cart_view` flags the line, prices it at the current price and says so in a note;
  `shop.checkout.place_order` asks the shopper to confirm the new total before ordering;
* stock is only checked here, never taken: it leaves the shelf when an order is paid (shop.payments);
* a cart may carry one discount code (`CartDiscount`, set by `shop.promotions.apply_code`);
* `attach_customer` ties the cart to a customer by email. A customer's other open cart (e.g. from an
  earlier visit) is merged into this one only when the conversation proved it owns that email
  (`shop.verification`), so typing somebody else's email never reveals their cart.

Totals come from `shop.orders.price_lines` (the one pricing function of the shop): the cart is
priced as a transient, never-saved order with the same lines, code and shipping method.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import Column, DateTime, ForeignKey, Integer, func, select
from sqlalchemy.orm import Session, object_session, selectinload

from shop.models import Base, Cart, CartItem, Customer, DiscountCode, Order, OrderItem, Variant
from shop.orders import Totals, price_lines
from shop.policy import Policy, format_money, load_policy

__all__ = [
    "DEFAULT_SHIPPING_METHOD", "MAX_LINE_QUANTITY", "CartDiscount", "CartError", "CartLine", "CartView",
    "add_item", "attach_customer", "build_view", "cart_lines", "cart_view", "find_customer", "find_open_cart",
    "get_or_create_cart", "normalise_email", "parse_quantity", "quote_totals", "remove_item", "session_key",
    "update_quantity", "utc_naive",
]

MAX_LINE_QUANTITY = 20
DEFAULT_SHIPPING_METHOD = "standard"
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]{2,}$")


class CartDiscount(Base):
    """The one discount code applied to a cart (no stacking: applying another replaces it)."""

    __tablename__ = "cart_discounts"
    cart_id = Column(Integer, ForeignKey("carts.id", ondelete="CASCADE"), primary_key=True)
    discount_code_id = Column(Integer, ForeignKey("discount_codes.id"), nullable=False)
    applied_at = Column(DateTime, nullable=False)


class CartError(Exception):
    """A cart request the shop refuses; nothing was changed. `message` is ready to show the shopper."""

    def __init__(self, code: str, message: str, *, suggestion: Optional[str] = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.suggestion = suggestion
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "suggestion": self.suggestion, "details": self.details}


# --------------------------------------------------------------------------------------------
# Small helpers shared by the cart, promotion and checkout services
# --------------------------------------------------------------------------------------------

def utc_naive(now: Optional[datetime] = None) -> datetime:
    """The shop stores naive UTC datetimes; accept aware ones too."""
    if now is None:
        return datetime.utcnow()
    if now.tzinfo is not None:
        return now.astimezone(timezone.utc).replace(tzinfo=None)
    return now


def normalise_email(value: object) -> str:
    """'  Sam@Example.COM ' -> 'sam@example.com'; CartError('invalid_email') when it is not an address."""
    text = "" if value is None else str(value).strip().lower()
    if not text or len(text) > 255 or not _EMAIL.match(text):
        raise CartError("invalid_email", "That doesn't look like an email address. Please check it (like name@example.com).",
                        email=str(value or "")[:255])
    return text


def session_key(session_id: object) -> str:
    key = "" if session_id is None else str(session_id).strip()
    if not key or len(key) > 255:
        raise CartError("no_session", "I can't find your cart for this conversation.")
    return key


def parse_quantity(value: object, *, allow_zero: bool = False) -> int:
    """A whole number of items, 1..MAX_LINE_QUANTITY (0 too when allow_zero); CartError otherwise."""
    number: Optional[int] = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,12}\s*", value):
        number = int(value)
    if number is None:
        raise CartError("invalid_quantity", "Please give the quantity as a whole number, like 1 or 2.")
    low = 0 if allow_zero else 1
    if number < low:
        raise CartError("invalid_quantity", "The quantity must be at least 1." if not allow_zero
                        else "The quantity can't be negative.", quantity=number)
    if number > MAX_LINE_QUANTITY:
        raise CartError("too_many", f"You can have at most {MAX_LINE_QUANTITY} of one item in your cart.",
                        quantity=number, maximum=MAX_LINE_QUANTITY)
    return number


def _label(variant: Variant) -> str:
    label = variant.label
    return f"{variant.product.title} ({label})" if label and label != "Default" else variant.product.title


def find_customer(session: Session, email: str) -> Optional[Customer]:
    return session.execute(
        select(Customer).where(func.lower(Customer.email) == email.strip().lower()).order_by(Customer.id).limit(1)
    ).scalar_one_or_none()


def _find_or_create_customer(session: Session, email: str, now: datetime) -> Customer:
    customer = find_customer(session, email)
    if customer is None:
        customer = Customer(email=email, created_at=now, preferences={})
        session.add(customer)
        session.flush()
    return customer


def find_open_cart(session: Session, session_id: str) -> Optional[Cart]:
    """The session's open cart (the newest, should there be several), or None."""
    return session.execute(
        select(Cart).where(Cart.session_id == session_key(session_id), Cart.status == "open")
        .options(selectinload(Cart.items).selectinload(CartItem.variant).selectinload(Variant.product))
        .order_by(Cart.id.desc()).limit(1)
    ).scalar_one_or_none()


def _variant(session: Session, variant_id: object) -> Optional[Variant]:
    try:
        wanted = int(variant_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if isinstance(variant_id, bool) or wanted <= 0 or wanted > 2 ** 62:
        return None
    return session.get(Variant, wanted)


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CartLine:
    variant_id: int
    product_title: str
    variant_label: str
    category_id: Optional[int]
    category: str
    quantity: int
    unit_price_cents: int  # the current price: what the shopper would pay now
    added_price_cents: int  # the price when the line was added
    line_total_cents: int
    price_changed: bool
    available: int  # units in stock now (0 when sold out or no longer sold)
    note: str = ""  # price change and stock notes, shopper-facing

    @property
    def label(self) -> str:
        return f"{self.product_title} ({self.variant_label})" if self.variant_label else self.product_title

    @property
    def orderable(self) -> bool:
        return self.available >= self.quantity

    @property
    def text(self) -> str:
        return (f"{self.quantity} x {self.label} at {format_money(self.unit_price_cents)} = "
                f"{format_money(self.line_total_cents)}")


@dataclass(frozen=True)
class CartView:
    session_id: str
    cart_id: Optional[int]
    lines: Tuple[CartLine, ...]
    subtotal_cents: int
    discount_code: Optional[str]
    discount_cents: int
    discount_note: str  # why an applied code gives nothing now ("" when it applies)
    shipping_method: str
    shipping_cents: int
    free_shipping_remaining_cents: int  # how much more merchandise earns free shipping (0 when it is free)
    tax_cents: int
    total_cents: int
    notes: Tuple[str, ...] = ()
    message: str = ""  # what the last change did, shopper-facing

    @property
    def is_empty(self) -> bool:
        return not self.lines

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def has_price_changes(self) -> bool:
        return any(line.price_changed for line in self.lines)

    def text(self) -> str:
        """The whole cart as plain text, for channels without rich messages."""
        if self.is_empty:
            return "Your cart is empty."
        out = ["Your cart:"]
        for line in self.lines:
            out.append(f"- {line.text}")
            if line.note:
                out.append(f"  ({line.note})")
        out.append(f"Subtotal: {format_money(self.subtotal_cents)}")
        if self.discount_code and self.discount_cents:
            out.append(f"Discount ({self.discount_code}): -{format_money(self.discount_cents)}")
        elif self.discount_code and self.discount_note:
            out.append(self.discount_note)
        shipping = "free" if self.shipping_cents == 0 else format_money(self.shipping_cents)
        out.append(f"Shipping ({self.shipping_method.capitalize()}): {shipping}")
        if self.free_shipping_remaining_cents:
            out.append(f"Add {format_money(self.free_shipping_remaining_cents)} more for free standard shipping.")
        out.append(f"Tax: {format_money(self.tax_cents)}")
        out.append(f"Total: {format_money(self.total_cents)}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lines"] = [dict(asdict(line), label=line.label) for line in self.lines]
        data["item_count"] = self.item_count
        return data


def cart_lines(session: Session, cart: Optional[Cart]) -> List[CartLine]:
    """The cart's lines at today's prices, with price-change and stock notes."""
    if cart is None:
        return []
    lines = []
    for item in cart.items:
        variant = item.variant
        product = variant.product
        current = variant.price_cents
        changed = current != item.unit_price_cents
        available = max(variant.stock, 0) if product.published else 0
        label = variant.label if variant.label != "Default" else ""
        name = f"{product.title} ({label})" if label else product.title
        notes = []
        if changed:
            direction = "dropped" if current < item.unit_price_cents else "went up"
            notes.append(f"the price {direction} from {format_money(item.unit_price_cents)} to "
                         f"{format_money(current)} since you added it; it's shown at the new price")
        if not product.published:
            notes.append(f"{name} is no longer sold")
        elif available == 0:
            notes.append(f"{name} is sold out")
        elif available < item.quantity:
            notes.append(f"only {available} left in stock")
        note = "; ".join(notes)
        lines.append(CartLine(
            variant_id=variant.id, product_title=product.title, variant_label=label,
            category_id=product.category_id, category=product.category.name if product.category else "",
            quantity=item.quantity, unit_price_cents=current, added_price_cents=item.unit_price_cents,
            line_total_cents=current * item.quantity, price_changed=changed, available=available,
            note=note[:1].upper() + note[1:] if note else "",
        ))
    return lines


def quote_totals(session: Session, lines: Sequence[CartLine], *, discount_code_id: Optional[int] = None,
                 shipping_method: str = DEFAULT_SHIPPING_METHOD, policy: Optional[Policy] = None) -> Totals:
    """Totals of these lines at their current prices, through shop.orders.price_lines.

    The lines become a transient Order (never added to the session) whose items carry stand-in ids,
    so checkout, the cart and order changes share one pricing function.
    """
    if not lines:
        return Totals(0, 0, 0, 0, 0)
    order = Order(discount_code_id=discount_code_id, shipping_method=shipping_method, subtotal_cents=0,
                  discount_cents=0, shipping_cents=0)
    quantities: Dict[int, int] = {}
    for stand_in_id, line in enumerate(lines, start=1):
        order.items.append(OrderItem(id=stand_in_id, variant_id=line.variant_id, product_title=line.product_title,
                                     variant_label=line.variant_label, quantity=line.quantity,
                                     unit_price_cents=line.unit_price_cents))
        quantities[stand_in_id] = line.quantity
    return price_lines(session, order, quantities, policy)


def _applied_code(session: Session, cart: Optional[Cart]) -> Optional[DiscountCode]:
    if cart is None or cart.id is None:
        return None
    applied = session.get(CartDiscount, cart.id)
    return session.get(DiscountCode, applied.discount_code_id) if applied else None


def _free_shipping_remaining(policy: Policy, method: str, merchandise_cents: int, shipping_cents: int) -> int:
    if shipping_cents == 0 or method not in policy.shipping.free_shipping_methods:
        return 0
    return max(policy.shipping.free_shipping_over_cents - merchandise_cents, 0)


def build_view(session: Session, session_id: str, cart: Optional[Cart], *,
               shipping_method: str = DEFAULT_SHIPPING_METHOD, now: Optional[datetime] = None,
               email: Optional[str] = None, message: str = "") -> CartView:
    """The view of an already loaded cart (see cart_view)."""
    from shop.promotions import check_code  # promotions builds on carts

    policy = load_policy()
    if shipping_method not in policy.shipping.methods:
        found = policy.shipping.resolve_method(shipping_method or "")
        shipping_method = found.key if found else DEFAULT_SHIPPING_METHOD
    lines = cart_lines(session, cart)
    code = _applied_code(session, cart)
    discount_note = ""
    code_id = None
    if code is not None:
        if email is None and cart is not None and cart.customer_id:
            customer = session.get(Customer, cart.customer_id)
            email = customer.email if customer else None
        check = check_code(session, code, lines=lines, email=email, now=utc_naive(now))
        if check.ok:
            code_id = code.id
        else:
            discount_note = f"Code {code.code} doesn't apply right now: {check.message}"
    totals = quote_totals(session, lines, discount_code_id=code_id, shipping_method=shipping_method, policy=policy)
    notes = tuple(line.note for line in lines if line.note) + ((discount_note,) if discount_note else ())
    return CartView(
        session_id=session_id, cart_id=cart.id if cart is not None else None, lines=tuple(lines),
        subtotal_cents=totals.subtotal_cents, discount_code=code.code if code is not None else None,
        discount_cents=totals.discount_cents, discount_note=discount_note, shipping_method=shipping_method,
        shipping_cents=totals.shipping_cents,
        free_shipping_remaining_cents=_free_shipping_remaining(
            policy, shipping_method, totals.subtotal_cents - totals.discount_cents, totals.shipping_cents) if lines else 0,
        tax_cents=totals.tax_cents, total_cents=totals.total_cents, notes=notes, message=message,
    )


def cart_view(session: Session, session_id: str, *, shipping_method: str = DEFAULT_SHIPPING_METHOD,
              now: Optional[datetime] = None, email: Optional[str] = None) -> CartView:
    """Lines (title, variant, current unit price, line total, change notes), subtotal, applied discount,
    shipping estimate for `shipping_method`, tax and total. Reads only; an empty view when there is no cart."""
    key = session_key(session_id)
    return build_view(session, key, find_open_cart(session, key), shipping_method=shipping_method, now=now,
                      email=email)


# --------------------------------------------------------------------------------------------
# Changes
# --------------------------------------------------------------------------------------------

def get_or_create_cart(session: Session, session_id: str, email: Optional[str] = None, *,
                       now: Optional[datetime] = None) -> Cart:
    """The session's open cart, created when there is none; with `email`, tied to that customer
    (see attach_customer)."""
    key = session_key(session_id)
    now = utc_naive(now)
    cart = find_open_cart(session, key)
    if cart is None:
        cart = Cart(session_id=key, status="open", created_at=now, updated_at=now)
        session.add(cart)
        session.flush()
    if email is not None:
        attach_customer(session, key, email, now=now)
    return cart


def _line(cart: Cart, variant_id: int) -> Optional[CartItem]:
    for item in cart.items:
        if item.variant_id == variant_id:
            return item
    return None


def _touch(cart: Cart, now: datetime) -> None:
    cart.updated_at = now
    # Every change re-arms the cart's abandoned-cart reminder (imported here: shop.reminders builds on carts).
    from shop.reminders import schedule_for_cart

    schedule_for_cart(object_session(cart), cart, now)


def add_item(session: Session, session_id: str, variant_id: int, quantity: object = 1, *,
             now: Optional[datetime] = None) -> CartView:
    """Put `quantity` of a variant in the cart (added to what is already there).

    Refused (CartError) with codes: invalid_quantity, too_many (more than 20 of one item), unknown_item,
    not_sold (unpublished), sold_out, not_enough_stock (details: available, in_cart).
    """
    key = session_key(session_id)
    now = utc_naive(now)
    qty = parse_quantity(quantity)
    variant = _variant(session, variant_id)
    if variant is None:
        raise CartError("unknown_item", "I couldn't find that item in our catalog.", variant_id=variant_id)
    name = _label(variant)
    if not variant.product.published:
        raise CartError("not_sold", f"Sorry, {name} isn't sold any more.", variant_id=variant.id)
    if variant.stock <= 0:
        raise CartError("sold_out", f"Sorry, {name} is sold out.", suggestion="other_variant", variant_id=variant.id)
    cart = find_open_cart(session, key)
    existing = _line(cart, variant.id) if cart is not None else None
    in_cart = existing.quantity if existing else 0
    wanted = in_cart + qty
    if wanted > MAX_LINE_QUANTITY:
        already = f" (you already have {in_cart} in your cart)" if in_cart else ""
        raise CartError("too_many", f"You can have at most {MAX_LINE_QUANTITY} of one item in your cart{already}.",
                        maximum=MAX_LINE_QUANTITY, in_cart=in_cart)
    if wanted > variant.stock:
        left = variant.stock - in_cart
        already = f", and you already have {in_cart} in your cart" if in_cart else ""
        more = (f" I can add {left} more." if left > 0 else " I can't add any more.") if in_cart else ""
        verb = "is" if variant.stock == 1 else "are"
        raise CartError("not_enough_stock", f"Only {variant.stock} of {name} {verb} in stock{already}.{more}",
                        available=variant.stock, in_cart=in_cart)
    # -- all checks passed: change the data
    if cart is None:
        cart = get_or_create_cart(session, key, now=now)
    if existing is not None:
        existing.quantity = wanted
    else:
        cart.items.append(CartItem(variant_id=variant.id, quantity=qty, unit_price_cents=variant.price_cents))
    _touch(cart, now)
    session.flush()
    message = f"Added {qty} x {name} to your cart" + (f" (now {wanted})." if existing else ".")
    return build_view(session, key, cart, now=now, message=message)


def _cart_with_line(session: Session, key: str, variant_id: object) -> Tuple[Cart, CartItem]:
    cart = find_open_cart(session, key)
    variant = _variant(session, variant_id)
    item = _line(cart, variant.id) if cart is not None and variant is not None else None
    if item is None:
        raise CartError("not_in_cart", "That item isn't in your cart.", variant_id=variant_id)
    return cart, item


def update_quantity(session: Session, session_id: str, variant_id: int, quantity: object, *,
                    now: Optional[datetime] = None) -> CartView:
    """Set a line's quantity (0 removes it). Raising it is checked against stock and the 20-item limit;
    lowering is always allowed. Refusals: invalid_quantity, too_many, not_in_cart, sold_out, not_enough_stock."""
    key = session_key(session_id)
    now = utc_naive(now)
    qty = parse_quantity(quantity, allow_zero=True)
    cart, item = _cart_with_line(session, key, variant_id)
    variant = item.variant
    name = _label(variant)
    if qty == 0:
        return remove_item(session, key, variant.id, now=now)
    if qty > item.quantity:
        available = variant.stock if variant.product.published else 0
        if available <= 0:
            raise CartError("sold_out", f"Sorry, {name} is sold out, so I can't add more.", variant_id=variant.id)
        if qty > available:
            verb = "is" if available == 1 else "are"
            raise CartError("not_enough_stock", f"Only {available} of {name} {verb} in stock.",
                            available=available, in_cart=item.quantity)
    if qty == item.quantity:
        return build_view(session, key, cart, now=now, message=f"You already have {qty} x {name} in your cart.")
    item.quantity = qty
    _touch(cart, now)
    session.flush()
    return build_view(session, key, cart, now=now, message=f"Updated {name} to {qty}.")


def remove_item(session: Session, session_id: str, variant_id: int, *, now: Optional[datetime] = None) -> CartView:
    """Take a line out of the cart; CartError('not_in_cart') when it isn't there."""
    key = session_key(session_id)
    now = utc_naive(now)
    cart, item = _cart_with_line(session, key, variant_id)
    name = _label(item.variant)
    cart.items.remove(item)
    _touch(cart, now)
    session.flush()
    return build_view(session, key, cart, now=now, message=f"Removed {name} from your cart.")


def _merge_into(session: Session, source: Cart, target: Cart, now: datetime) -> Tuple[int, List[str]]:
    """Move the lines of `source` into `target` (capped at stock and the 20-item limit); source is abandoned."""
    moved, notes = 0, []
    for item in list(source.items):
        variant = item.variant
        name = _label(variant)
        available = variant.stock if variant.product.published else 0
        existing = _line(target, variant.id)
        have = existing.quantity if existing else 0
        new_qty = min(have + item.quantity, available, MAX_LINE_QUANTITY)
        if new_qty <= have:
            if have == 0:
                notes.append(f"{name} from your earlier cart is sold out")
        else:
            if new_qty < have + item.quantity:
                notes.append(f"only {new_qty} of {name} could be kept (stock or the {MAX_LINE_QUANTITY}-item limit)")
            if existing is not None:
                existing.quantity = new_qty
            else:
                target.items.append(CartItem(variant_id=variant.id, quantity=new_qty,
                                             unit_price_cents=item.unit_price_cents))
            moved += new_qty - have
        source.items.remove(item)
    session.flush()
    source_code = session.get(CartDiscount, source.id)
    if source_code is not None:
        if session.get(CartDiscount, target.id) is None:
            session.add(CartDiscount(cart_id=target.id, discount_code_id=source_code.discount_code_id,
                                     applied_at=source_code.applied_at))
        session.delete(source_code)
    source.status = "abandoned"
    _touch(source, now)
    return moved, notes


def attach_customer(session: Session, session_id: str, email: str, *, verified: Optional[bool] = None,
                    now: Optional[datetime] = None) -> CartView:
    """Tie the session's cart to the customer with this email (a customer record is created for a new
    email). When the conversation is verified for this email (`verified=None` asks shop.verification;
    True/False when the caller knows, e.g. a logged-in web shopper), the customer's other open carts are
    merged into this one. Refusal: invalid_email."""
    key = session_key(session_id)
    now = utc_naive(now)
    email = normalise_email(email)
    if verified is None:
        from shop.verification import verified_email

        verified = verified_email(session, key, now) == email
    cart = get_or_create_cart(session, key, now=now)
    customer = _find_or_create_customer(session, email, now)
    cart.customer_id = customer.id
    _touch(cart, now)
    session.flush()
    moved, notes = 0, []
    if verified:
        others = session.execute(
            select(Cart).where(Cart.customer_id == customer.id, Cart.status == "open", Cart.id != cart.id)
            .order_by(Cart.id)
        ).scalars().all()
        for other in others:
            got, why = _merge_into(session, other, cart, now)
            moved += got
            notes += why
        session.flush()
        session.expire(cart, ["items"])
    if moved:
        message = f"Welcome back! I've added the {moved} item{'s' if moved != 1 else ''} from your earlier cart."
    else:
        message = "Thanks, your cart is saved under your email address."
    if notes:
        message += " Note: " + "; ".join(notes) + "."
    return build_view(session, key, cart, now=now, email=email, message=message)
