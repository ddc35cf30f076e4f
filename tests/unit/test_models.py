"""The schema refuses data that would break the shop: the database, not only the code, says no."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shop.db import session_scope
from shop.models import ORDER_STATUSES, Customer, Order, Product, Review, Variant


def _product(handle: str = "canvas-sneakers", **extra) -> Product:
    return Product(handle=handle, title="Canvas Sneakers", product_type="Sneakers", **extra)


def test_a_product_with_variants_round_trips(engine):
    with session_scope(engine) as session:
        product = _product()
        product.variants = [
            Variant(sku="CS-RED-42", color="red", size="42", price_cents=5999, stock=3),
            Variant(sku="CS-RED-43", color="red", size="43", price_cents=5999, stock=0),
        ]
        session.add(product)
    with session_scope(engine) as session:
        stored = session.execute(select(Product).where(Product.handle == "canvas-sneakers")).scalar_one()
        assert [(v.label, v.price_cents, v.stock) for v in stored.variants] == [
            ("red / 42", 5999, 3), ("red / 43", 5999, 0),
        ]


def test_negative_stock_is_rejected(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            product = _product()
            product.variants = [Variant(color="red", size="42", price_cents=5999, stock=-1)]
            session.add(product)
    with session_scope(engine) as session:
        assert session.execute(select(func.count()).select_from(Product)).scalar_one() == 0


def test_negative_price_is_rejected(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            product = _product()
            product.variants = [Variant(color="red", size="42", price_cents=-100, stock=1)]
            session.add(product)


def test_duplicate_handle_is_rejected_and_the_first_product_stays(engine):
    with session_scope(engine) as session:
        session.add(_product(description="the original"))
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(_product(description="an impostor"))
    with session_scope(engine) as session:
        rows = session.execute(select(Product.description)).scalars().all()
    assert rows == ["the original"]


def test_the_same_colour_and_size_twice_on_one_product_is_rejected(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            product = _product()
            product.variants = [
                Variant(color="red", size="42", price_cents=5999, stock=1),
                Variant(color="red", size="42", price_cents=6999, stock=1),
            ]
            session.add(product)


def _order(status: str, number: str = "SH-900001") -> Order:
    return Order(number=number, email="sam@example.com", status=status)


def test_every_known_order_status_is_accepted(engine):
    with session_scope(engine) as session:
        for index, status in enumerate(ORDER_STATUSES):
            session.add(_order(status, number=f"SH-9{index:05d}"))
    with session_scope(engine) as session:
        stored = set(session.execute(select(Order.status)).scalars())
    assert stored == set(ORDER_STATUSES)


@pytest.mark.parametrize("status", ["lost", "SHIPPED", ""])
def test_an_unknown_order_status_is_rejected(engine, status):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(_order(status))


def test_duplicate_order_number_is_rejected(engine):
    with session_scope(engine) as session:
        session.add(_order("paid"))
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(_order("paid"))


@pytest.mark.parametrize("rating", [0, 6])
def test_review_rating_must_be_one_to_five(engine, rating):
    with session_scope(engine) as session:
        session.add(_product())
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            product = session.execute(select(Product)).scalar_one()
            session.add(Review(product=product, rating=rating, author_name="Sam"))


def test_duplicate_customer_email_is_rejected(engine):
    with session_scope(engine) as session:
        session.add(Customer(email="sam@example.com"))
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(Customer(email="sam@example.com"))
