"""Helpers for the order, return and verification service tests: explicit orders, table snapshots and a
real local SMTP server (aiosmtpd) that keeps what it receives."""
from __future__ import annotations

import email
import email.policy
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import shop.verification  # noqa: F401 - registers the verification tables before snapshots
from shop.models import Base, Customer, DiscountCode, Order, OrderItem, Variant
from tests.factories import add_product

TAX_PERCENT = 8


def catalog(session: Session) -> Dict[str, Variant]:
    """A tiny catalog: name -> variant (stock 20 each unless noted)."""
    sneakers = add_product(session, "Canvas Sneakers", "Shoes", "Sneakers", "Northwind",
                           [("red", "42", 5000, 20), ("red", "43", 5000, 20)])
    tee = add_product(session, "Everyday Tee", "Apparel", "T-Shirt", "Bluefield", [("white", "M", 1500, 20)])
    cream = add_product(session, "Glow Face Cream", "Beauty", "Face Cream", "Glowbird", [("white", "One Size", 2500, 20)])
    jacket = add_product(session, "Clearance Jacket", "Apparel", "Jacket", "Fogline", [("navy", "L", 8000, 2)])
    jacket.tags = "jacket, apparel, Clearance"
    session.flush()
    return {
        "sneakers42": sneakers.variants[0], "sneakers43": sneakers.variants[1], "tee": tee.variants[0],
        "cream": cream.variants[0], "jacket": jacket.variants[0],
    }


def make_order(session: Session, number: str, lines: Sequence[Tuple[Variant, int]], *, status: str = "delivered",
               email: str = "sam@example.com", customer: Optional[Customer] = None,
               placed_at: datetime = datetime(2024, 5, 1, 10, 0), delivered_at: Optional[datetime] = None,
               carrier: Optional[str] = None, tracking_number: Optional[str] = None,
               estimated_delivery: Optional[date] = None, country: str = "US", postcode: str = "97205",
               city: str = "Portland, OR", address: str = "742 Maple Street", shipping_method: str = "standard",
               discount_code: Optional[DiscountCode] = None, discount_cents: int = 0) -> Order:
    """An order with the shop's pricing: shipping 5.99 (free from 75.00 after discount) or 12.99 express, 8% tax."""
    subtotal = sum(v.price_cents * q for v, q in lines)
    if shipping_method == "express":
        shipping = 1299
    else:
        free = discount_code is not None and discount_code.kind == "free_shipping"
        shipping = 0 if free or subtotal - discount_cents >= 7500 else 599
    tax = ((subtotal - discount_cents) * TAX_PERCENT + 50) // 100
    order = Order(
        number=number, email=email, status=status, customer=customer, shipping_name="Sam Rivera",
        shipping_address=address, shipping_city=city, shipping_postcode=postcode, shipping_country=country,
        shipping_method=shipping_method, carrier=carrier, tracking_number=tracking_number,
        estimated_delivery=estimated_delivery, delivered_at=delivered_at, subtotal_cents=subtotal,
        discount_cents=discount_cents, shipping_cents=shipping, tax_cents=tax,
        total_cents=subtotal - discount_cents + shipping + tax, placed_at=placed_at,
        discount_code_id=discount_code.id if discount_code else None,
    )
    for variant, quantity in lines:
        order.items.append(OrderItem(variant_id=variant.id, product_title=variant.product.title,
                                     variant_label=variant.label, quantity=quantity,
                                     unit_price_cents=variant.price_cents))
    session.add(order)
    session.flush()
    return order


def item_id(session: Session, number: str, title: str) -> int:
    return session.execute(
        select(OrderItem.id).join(Order).where(Order.number == number, OrderItem.product_title == title)
    ).scalar_one()


def snapshot(engine: Engine) -> Dict[str, List[tuple]]:
    """Every row of every shop table (sorted), to prove that a refusal changed nothing."""
    rows = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = sorted((tuple(r) for r in conn.execute(table.select())), key=repr)
    return rows


# --------------------------------------------------------------------------------------------
# A real SMTP server
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: List[str]
    message: email.message.EmailMessage

    @property
    def body(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


@dataclass
class Inbox:
    host: str
    port: int
    messages: List[Received] = field(default_factory=list)
    refuse: Tuple[str, ...] = ()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def codes(self) -> List[str]:
        return [re.search(r"\b(\d{6})\b", m.body).group(1) for m in self.messages]


@contextmanager
def smtp_server(refuse: Iterable[str] = (), credentials: Optional[Tuple[str, str]] = None) -> Iterator[Inbox]:
    """aiosmtpd on a free local port; with credentials it requires AUTH (over plain text, tests only)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    inbox = Inbox("127.0.0.1", free_port(), refuse=tuple(refuse))
    kwargs = {}
    if credentials:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode(), auth_data.password.decode()) == credentials
            return AuthResult(success=ok, handled=False)

        kwargs = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port, **kwargs)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
