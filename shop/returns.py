"""Returns and refunds: per-item eligibility, starting a return (RMA + label), refund status.

The rules come from shop/policies.yml through shop.policy (window, final-sale categories and tags,
who pays the return postage, refund timing), so the chat's policy answer and these checks agree.
Like shop.orders, a refused request raises an `OrderRefusal` (here `ReturnRefusal`, with one entry
per problem item in `details["problems"]`) before anything changes; pass the verified shopper's
email as `owner_email`.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Dict, List, Mapping, Optional, Tuple

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shop.models import Category, Customer, Order, OrderItem, Product, Refund, Return, ReturnItem, Variant
from shop.orders import OrderRefusal, find_order, format_date, transition
from shop.policy import Policy, format_money, load_policy, refund_timing_text

__all__ = [
    "ItemEligibility", "RefundInfo", "RefundStatus", "ReturnEligibility", "ReturnInfo", "ReturnRefusal",
    "ReturnStarted", "ReturnedLine", "refund_status", "refunds_for_customer", "return_eligibility", "start_return",
]

DELIVERED_OR_LATER = ("delivered", "return_requested", "returned", "refunded")
RESOLUTION_TEXT = {"refund": "a refund", "exchange": "an exchange", "store_credit": "store credit"}


class ReturnRefusal(OrderRefusal):
    """A return the shop refuses; `details['problems']` lists {order_item_id, code, message} per problem."""


# --------------------------------------------------------------------------------------------
# Eligibility
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ItemEligibility:
    order_item_id: int
    product_title: str
    variant_label: str
    quantity: int  # bought
    returned_quantity: int  # already on an earlier return
    returnable_quantity: int  # what can still be returned now (0 when not eligible)
    eligible: bool
    reason_code: Optional[str]  # not_delivered, order_cancelled, outside_window, final_sale, already_returned
    reason: str  # shopper-facing; "" when eligible

    @property
    def label(self) -> str:
        return self.product_title + (f" ({self.variant_label})" if self.variant_label else "")


@dataclass(frozen=True)
class ReturnEligibility:
    order_number: str
    status: str
    delivered_on: Optional[date]
    window_days: int
    deadline: Optional[date]  # last day a return can be started
    days_left: Optional[int]  # 0 on the last day; negative once the window has closed
    items: Tuple[ItemEligibility, ...]
    message: str  # order-level explanation, ready to show

    @property
    def eligible_items(self) -> Tuple[ItemEligibility, ...]:
        return tuple(i for i in self.items if i.eligible)

    @property
    def any_eligible(self) -> bool:
        return any(i.eligible for i in self.items)


def _today(today: Optional[date]) -> date:
    if today is None:
        return datetime.utcnow().date()
    return today.date() if isinstance(today, datetime) else today


def _returned_quantities(session: Session, order: Order) -> Dict[int, int]:
    rows = session.execute(
        select(ReturnItem.order_item_id, func.sum(ReturnItem.quantity))
        .join(Return, Return.id == ReturnItem.return_id)
        .where(Return.order_id == order.id, Return.status != "rejected")
        .group_by(ReturnItem.order_item_id)
    ).all()
    return {item_id: int(qty or 0) for item_id, qty in rows}


def _catalog_facts(session: Session, item: OrderItem) -> Tuple[Optional[str], str]:
    """(category name, product tags) of the item's product; (None, '') when the variant is gone."""
    if item.variant_id is None:
        return None, ""
    row = session.execute(
        select(Category.name, Product.tags)
        .select_from(Variant).join(Product, Product.id == Variant.product_id)
        .outerjoin(Category, Category.id == Product.category_id)
        .where(Variant.id == item.variant_id)
    ).first()
    return (row[0], row[1] or "") if row else (None, "")


def _assess(session: Session, order: Order, policy: Policy, today: date) -> ReturnEligibility:
    window = policy.returns.window_days
    returned = _returned_quantities(session, order)
    delivered_on = order.delivered_at.date() if order.delivered_at else None
    deadline = delivered_on + timedelta(days=window) if delivered_on else None
    days_left = (deadline - today).days if deadline else None

    order_code, order_reason = None, ""
    if order.status == "cancelled":
        order_code, order_reason = "order_cancelled", f"Order {order.number} was cancelled, so there is nothing to return."
    elif order.status not in DELIVERED_OR_LATER or delivered_on is None:
        where = {
            "pending_payment": "it's still waiting for payment",
            "paid": "it hasn't shipped yet",
            "packed": "it hasn't shipped yet",
            "shipped": f"it's still on its way with {order.carrier or 'the carrier'}",
        }.get(order.status, "it hasn't arrived yet")
        order_code = "not_delivered"
        order_reason = (f"Order {order.number} hasn't been delivered yet ({where}), so it can't be returned yet. "
                        f"Once it arrives you'll have {window} days to return it."
                        + (" If you don't want it any more, you can still cancel it before it ships."
                           if order.status in ("pending_payment", "paid", "packed") else ""))
    elif days_left is not None and days_left < 0:
        late = -days_left
        order_code = "outside_window"
        order_reason = (f"The {window}-day return window for order {order.number} closed on {format_date(deadline)}, "
                        f"{late} day{'s' if late != 1 else ''} ago, so it can't be returned any more.")

    items: List[ItemEligibility] = []
    for item in order.items:
        done = min(returned.get(item.id, 0), item.quantity)
        left = item.quantity - done
        code, reason = order_code, order_reason
        if code is None:
            category, tags = _catalog_facts(session, item)
            final = policy.final_sale_reason(category, tags)
            label = item.product_title + (f" ({item.variant_label})" if item.variant_label else "")
            if final:
                code = "final_sale"
                reason = f"{label} can't be returned: {final}. {policy.returns.damaged_or_wrong}"
            elif left <= 0:
                code = "already_returned"
                reason = f"{label} is already on a return" + (" (all of them)." if item.quantity > 1 else ".")
        items.append(ItemEligibility(
            order_item_id=item.id, product_title=item.product_title, variant_label=item.variant_label or "",
            quantity=item.quantity, returned_quantity=done, returnable_quantity=left if code is None else 0,
            eligible=code is None, reason_code=code, reason=reason,
        ))
    if order_code:
        message = order_reason
    elif any(i.eligible for i in items):
        message = (f"You can return items from order {order.number} until {format_date(deadline)} "
                   f"({days_left} day{'s' if days_left != 1 else ''} left).")
    else:
        message = f"Nothing on order {order.number} can be returned: " + " ".join(i.reason for i in items)
    return ReturnEligibility(order.number, order.status, delivered_on, window, deadline, days_left,
                             tuple(items), message)


def return_eligibility(session: Session, number: str, today: Optional[date] = None, *,
                       owner_email: Optional[str] = None) -> ReturnEligibility:
    """Per item: delivered, inside the window (from delivered_at), not final sale, not already returned."""
    order = find_order(session, number, owner_email=owner_email)
    return _assess(session, order, load_policy(), _today(today))


# --------------------------------------------------------------------------------------------
# Starting a return
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReturnedLine:
    order_item_id: int
    label: str
    quantity: int


@dataclass(frozen=True)
class ReturnStarted:
    rma_number: str
    label_url: str
    order_number: str
    items: Tuple[ReturnedLine, ...]
    resolution: str
    refund_cents: int  # what the shopper gets back (0 for an exchange)
    refund_id: Optional[int]
    prepaid_label: bool  # True: the shop pays the postage
    message: str


def _refusal(order: Order, problems: List[dict], suggestion: Optional[str] = None) -> ReturnRefusal:
    codes = {p["code"] for p in problems}
    code = problems[0]["code"] if len(codes) == 1 else "several_problems"
    seen, lines = set(), []
    for problem in problems:
        if problem["message"] not in seen:
            seen.add(problem["message"])
            lines.append(problem["message"])
    return ReturnRefusal(code, " ".join(lines), order_number=order.number, suggestion=suggestion,
                         details={"problems": problems})


def _new_rma(session: Session) -> str:
    for _ in range(50):
        candidate = f"RMA-{secrets.randbelow(900000) + 100000}"
        if session.execute(select(Return.id).where(Return.rma_number == candidate)).first() is None:
            return candidate
    raise RuntimeError("could not find a free RMA number")  # practically unreachable


def start_return(session: Session, number: str, items: Mapping[object, object], reason: str = "",
                 resolution: str = "refund", *, today: Optional[date] = None, owner_email: Optional[str] = None,
                 now: Optional[datetime] = None) -> ReturnStarted:
    """Start a return of `items` ({order_item_id: quantity}) -> RMA number, label link, pending refund.

    The order moves to return_requested. Refusals (ReturnRefusal, nothing changed): not_delivered,
    order_cancelled, outside_window, final_sale, already_returned, item_not_on_order, quantity_exceeds,
    invalid_quantity, no_items, invalid_resolution.
    """
    policy = load_policy()
    day = _today(today)
    order = find_order(session, number, owner_email=owner_email, for_update=True)

    resolution = (resolution or "").strip().lower().replace(" ", "_").replace("-", "_")
    if resolution not in policy.returns.resolutions:
        options = ", ".join(RESOLUTION_TEXT[r] for r in policy.returns.resolutions)
        raise ReturnRefusal("invalid_resolution", f"For a return you can choose {options}.",
                            order_number=order.number)
    if not items:
        raise ReturnRefusal("no_items", "Which items would you like to return, and how many of each?",
                            order_number=order.number)
    wanted: Dict[int, int] = {}
    problems: List[dict] = []
    by_id = {item.id: item for item in order.items}
    for raw_id, raw_qty in items.items():
        try:
            item_id = int(str(raw_id).strip())
        except ValueError:
            item_id = None
        try:
            qty = int(str(raw_qty).strip()) if not isinstance(raw_qty, bool) else None
        except ValueError:
            qty = None
        if item_id is None or item_id not in by_id:
            problems.append({"order_item_id": raw_id, "code": "item_not_on_order",
                             "message": f"Item {raw_id} isn't on order {order.number}."})
            continue
        if qty is None or qty < 1:
            problems.append({"order_item_id": item_id, "code": "invalid_quantity",
                             "message": f"The quantity to return must be a whole number of at least 1 (got {raw_qty!r})."})
            continue
        wanted[item_id] = wanted.get(item_id, 0) + qty
    if problems:
        raise _refusal(order, problems)

    assessment = _assess(session, order, policy, day)
    by_item = {e.order_item_id: e for e in assessment.items}
    for item_id, qty in wanted.items():
        e = by_item[item_id]
        if not e.eligible:
            problems.append({"order_item_id": item_id, "code": e.reason_code, "message": e.reason,
                             "days_outside_window": -assessment.days_left if e.reason_code == "outside_window" else None})
        elif qty > e.returnable_quantity:
            already = f", and {e.returned_quantity} {'is' if e.returned_quantity == 1 else 'are'} already on a return" \
                if e.returned_quantity else ""
            problems.append({
                "order_item_id": item_id, "code": "quantity_exceeds",
                "message": (f"You bought {e.quantity} x {e.label}{already}, so you can return at most "
                            f"{e.returnable_quantity}, not {qty}."),
                "returnable_quantity": e.returnable_quantity,
            })
    if problems:
        suggestion = "cancel_order" if problems[0]["code"] == "not_delivered" and order.status in (
            "pending_payment", "paid", "packed") else None
        raise _refusal(order, problems, suggestion)

    # -- all checks passed: change the data
    region = policy.shipping.region_for_country(order.shipping_country)
    prepaid = bool(region and policy.returns.shop_pays_return_shipping(region.key))
    rma = _new_rma(session)
    created = now or datetime.utcnow()
    ret = Return(rma_number=rma, order_id=order.id, status="requested", reason=(reason or "").strip()[:255],
                 resolution=resolution, created_at=created)
    lines = []
    value = 0
    for item_id, qty in wanted.items():
        item = by_id[item_id]
        ret.items.append(ReturnItem(order_item_id=item_id, quantity=qty))
        lines.append(ReturnedLine(item_id, by_item[item_id].label, qty))
        value += qty * item.unit_price_cents
    session.add(ret)
    transition(order, "return_requested")
    session.flush()  # the return's id, for its refund
    refund = None
    amount = 0
    if resolution in ("refund", "store_credit"):
        # the shopper gets back what they paid for those items: their share of discount and tax included
        paid_for_goods = order.subtotal_cents - order.discount_cents + order.tax_cents
        amount = value * paid_for_goods // order.subtotal_cents if order.subtotal_cents else 0
        already = sum(r.amount_cents for r in order.refunds)
        amount = max(0, min(amount, order.total_cents - already))
        refund = Refund(return_id=ret.id, amount_cents=amount, status="pending", created_at=created,
                        method="store_credit" if resolution == "store_credit" else "original_payment")
        order.refunds.append(refund)
        session.flush()

    label_url = policy.returns.label_url(rma)
    listed = ", ".join(f"{line.quantity} x {line.label}" for line in lines)
    postage = "The label is prepaid." if prepaid else "Please pay the return postage when you drop it off."
    message = f"Your return {rma} for {listed} is set up. Print your return label here: {label_url}. {postage}"
    if resolution == "refund":
        message += f" Refund: {format_money(amount)}. " + refund_timing_text("return", policy)
    elif resolution == "store_credit":
        message += f" Store credit: {format_money(amount)}. " + refund_timing_text("store_credit", policy)
    else:
        message += " " + refund_timing_text("exchange", policy)
    return ReturnStarted(rma, label_url, order.number, tuple(lines), resolution, amount,
                         refund.id if refund else None, prepaid, message)


# --------------------------------------------------------------------------------------------
# Refunds
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefundInfo:
    id: int
    order_number: str
    rma_number: Optional[str]
    amount_cents: int
    status: str  # pending | completed
    status_text: str
    method: str  # original_payment | store_credit
    created_at: datetime
    completed_at: Optional[datetime]

    @property
    def text(self) -> str:
        source = f"return {self.rma_number}" if self.rma_number else f"order {self.order_number}"
        return f"{format_money(self.amount_cents)} for {source}: {self.status_text}"


@dataclass(frozen=True)
class ReturnInfo:
    rma_number: str
    status: str  # requested | received | refunded | rejected
    resolution: str
    created_at: datetime
    items: Tuple[ReturnedLine, ...]


@dataclass(frozen=True)
class RefundStatus:
    order_number: str
    refunds: Tuple[RefundInfo, ...]
    returns: Tuple[ReturnInfo, ...]
    message: str

    @property
    def total_refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds if r.status == "completed")

    @property
    def total_pending_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds if r.status != "completed")


def _method_text(method: str, policy: Policy) -> str:
    return "store credit" if method == "store_credit" else policy.refunds.method


def _refund_info(refund: Refund, order: Order, ret: Optional[Return], policy: Policy) -> RefundInfo:
    where = _method_text(refund.method, policy)
    if refund.status == "completed":
        when = f" on {format_date(refund.completed_at)}" if refund.completed_at else ""
        text = f"completed{when}, to {where}"
    elif ret is not None and ret.status == "requested":
        text = f"waiting for your return to reach our warehouse; then it goes to {where}"
    elif ret is not None:
        text = f"your return arrived and the refund to {where} is being processed"
    else:
        text = "started. " + refund_timing_text("cancellation", policy)
    return RefundInfo(refund.id, order.number, ret.rma_number if ret else None, refund.amount_cents,
                      refund.status, text, refund.method, refund.created_at, refund.completed_at)


def _refunds_of(session: Session, orders: List[Order], policy: Policy) -> List[RefundInfo]:
    infos = []
    for order in orders:
        returns = {r.id: r for r in order.returns}
        for refund in order.refunds:
            infos.append(_refund_info(refund, order, returns.get(refund.return_id), policy))
    infos.sort(key=lambda r: (r.created_at or datetime.min, r.id), reverse=True)
    return infos


def refund_status(session: Session, number: str, *, owner_email: Optional[str] = None) -> RefundStatus:
    """The refunds (amount, status) and returns of one order, with a ready-to-show message."""
    policy = load_policy()
    order = find_order(session, number, owner_email=owner_email)
    refunds = _refunds_of(session, [order], policy)
    returns = tuple(
        ReturnInfo(r.rma_number, r.status, r.resolution, r.created_at, tuple(
            ReturnedLine(i.order_item_id, i.order_item.product_title + (
                f" ({i.order_item.variant_label})" if i.order_item.variant_label else ""), i.quantity)
            for i in r.items))
        for r in sorted(order.returns, key=lambda r: (r.created_at, r.id), reverse=True)
    )
    if refunds:
        message = f"Refunds for order {order.number}: " + "; ".join(r.text for r in refunds) + "."
    elif order.status in ("return_requested", "returned") and returns:
        message = f"Your return for order {order.number} is an exchange, so there's no refund."
    else:
        message = f"There's no refund on order {order.number}."
    return RefundStatus(order.number, tuple(refunds), returns, message)


def refunds_for_customer(session: Session, email: str) -> List[RefundInfo]:
    """Every refund on the shopper's orders (order email or account email), most recent first."""
    wanted = (email or "").strip().lower()
    if not wanted:
        return []
    orders = session.execute(
        select(Order).outerjoin(Customer, Order.customer_id == Customer.id)
        .where(or_(func.lower(Order.email) == wanted, func.lower(Customer.email) == wanted))
    ).scalars().unique().all()
    return _refunds_of(session, list(orders), load_policy())
