"""The demo store: deterministic, big enough, and internally consistent like a real shop's data."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from shop.catalog import SearchFilters, search_products
from shop.db import session_scope
from shop.models import (
    ORDER_STATUSES,
    Brand,
    Category,
    Customer,
    DiscountCode,
    Order,
    OrderItem,
    Product,
    Refund,
    Return,
    ReturnItem,
    Review,
    Variant,
)
from shop.seed import (
    CATEGORIES,
    CLOTHING_SIZES,
    COLORS,
    SHOE_SIZES,
    SeedConfig,
    SeedError,
    seed_store,
    store_counts,
)
from tests.unit.conftest import TODAY, backend_engine

SMALL = dict(products=120, reviews=300, customers=30, orders=150, today=TODAY)


def _count(session, model, *where) -> int:
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _fingerprint(engine):
    """Everything a shopper could notice, in a stable order."""
    with session_scope(engine) as session:
        products = session.execute(
            select(Product.handle, Product.title, Product.description, Product.product_type)
            .order_by(Product.handle)
        ).all()
        variants = session.execute(
            select(Product.handle, Variant.sku, Variant.color, Variant.size, Variant.price_cents,
                   Variant.compare_at_price_cents, Variant.stock)
            .join(Product).order_by(Variant.sku)
        ).all()
        customers = session.execute(select(Customer.email, Customer.city, Customer.preferences)
                                    .order_by(Customer.email)).all()
        orders = session.execute(
            select(Order.number, Order.email, Order.status, Order.total_cents, Order.placed_at,
                   Order.tracking_number).order_by(Order.number)
        ).all()
        reviews = session.execute(select(Review.rating, Review.body).order_by(Review.id)).all()
    return [tuple(r) for r in products], [tuple(r) for r in variants], \
        [(e, c, sorted(p.items())) for e, c, p in customers], [tuple(r) for r in orders], [tuple(r) for r in reviews]


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_store_on_any_database(engine, tmp_path):
    seed_store(engine, SeedConfig(seed=7, **SMALL), progress=False)
    with backend_engine("sqlite", tmp_path / "other") as other:
        seed_store(other, SeedConfig(seed=7, **SMALL), progress=False)
        assert _fingerprint(engine) == _fingerprint(other)


def test_another_seed_gives_another_store(tmp_path):
    with backend_engine("sqlite", tmp_path / "a") as a, backend_engine("sqlite", tmp_path / "b") as b:
        seed_store(a, SeedConfig(seed=1, **SMALL), progress=False)
        seed_store(b, SeedConfig(seed=2, **SMALL), progress=False)
        titles_a, titles_b = (_fingerprint(e)[0] for e in (a, b))
    assert titles_a != titles_b


def test_seeding_twice_refuses_and_if_empty_does_nothing(engine):
    first = seed_store(engine, SeedConfig(**SMALL), progress=False)
    assert first.seeded and first.products == 120
    before = store_counts(engine)

    again = seed_store(engine, SeedConfig(seed=99, **SMALL), if_empty=True, progress=False)
    assert not again.seeded
    assert "already has 120 products" in again.message
    with pytest.raises(SeedError, match="--reset"):
        seed_store(engine, SeedConfig(seed=99, **SMALL), progress=False)
    assert store_counts(engine) == before


def test_the_application_can_add_rows_after_a_seed(engine):
    """Seeding writes explicit ids: PostgreSQL's sequences must have been moved past them."""
    seed_store(engine, SeedConfig(**SMALL), progress=False)
    with session_scope(engine) as session:
        session.add(Customer(email="new.shopper@example.com"))
        session.add(Order(number="SH-999999", email="new.shopper@example.com", status="pending_payment"))
        product = Product(handle="brand-new-product", title="Brand New Product")
        product.variants = [Variant(color="red", size="M", price_cents=1000, stock=1)]
        session.add(product)
    with session_scope(engine) as session:
        assert session.execute(select(Customer.id).where(Customer.email == "new.shopper@example.com")).scalar_one() > 30


def test_tiny_stores_still_have_what_the_chat_demo_needs(engine):
    seed_store(engine, SeedConfig(products=12, reviews=5, customers=3, orders=12, today=TODAY), progress=False)
    with session_scope(engine) as session:
        cheap = search_products(session, SearchFilters(text="sneakers", color="red", price_max_cents=7999))
        dear = search_products(session, SearchFilters(category="sneakers", color="red", price_min_cents=8000))
        statuses = set(session.execute(select(Order.status)).scalars())
    assert cheap.total >= 1 and dear.total >= 1
    assert statuses == set(ORDER_STATUSES)


# --------------------------------------------------------------------------------------------
# The default demo store (seeded once per backend)
# --------------------------------------------------------------------------------------------

def test_default_store_meets_the_minimum_sizes(demo_store):
    engine, report = demo_store
    counts = store_counts(engine)
    assert counts["products"] >= 1000
    assert counts["variants"] > counts["products"]
    assert counts["reviews"] >= 3000
    assert counts["customers"] >= 200
    assert counts["orders"] >= 1000
    assert 35 <= counts["brands"] <= 50
    assert report.orders == counts["orders"] and report.products == counts["products"]
    assert all(counts["orders_by_status"][s] > 0 for s in ORDER_STATUSES), counts["orders_by_status"]


def test_categories_brands_and_product_types(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        assert set(CATEGORIES) <= set(session.execute(select(Category.name)).scalars())
        per_category = dict(session.execute(
            select(Category.name, func.count(Product.id)).join(Product).group_by(Category.name)
        ).all())
        assert all(per_category[c] >= 20 for c in CATEGORIES), per_category
        types = set(session.execute(select(Category.name, Product.product_type).join(Product)).all())
        for expected in [("Shoes", "Sneakers"), ("Shoes", "Running Shoes"), ("Apparel", "Jeans"),
                         ("Apparel", "Jacket"), ("Apparel", "T-Shirt"), ("Apparel", "Dress")]:
            assert expected in types
        assert _count(session, Product, Product.brand_id.is_(None)) == 0
        assert _count(session, Brand) >= 35


def test_red_sneakers_both_under_and_over_80_dollars(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        cheap = search_products(session, SearchFilters(text="sneakers", color="red", price_max_cents=7999, limit=50))
        dear = search_products(session, SearchFilters(text="sneakers", color="red", price_min_cents=8000, limit=50))
        running = search_products(session, SearchFilters(text="running shoes", color="red", limit=50))
    assert cheap.total >= 3 and dear.total >= 3 and running.total >= 2
    assert all(p.price_cents < 8000 and "red" in p.colors for p in cheap.products)
    assert all(p.price_cents >= 8000 for p in dear.products)


def test_handles_images_colours_sizes_and_prices_look_real(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        rows = session.execute(select(Product.handle, Product.image_url, Product.title, Product.description)).all()
        assert len({h for h, *_ in rows}) == len(rows)
        assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", h) for h, *_ in rows)
        assert all(img == f"/images/products/{h}.svg" for h, img, *_ in rows)
        assert all(len(desc) > 80 and "{" not in desc and desc.endswith(".") for *_, desc in rows)
        assert sum(title in desc for _, _, title, desc in rows) > len(rows) // 3
        assert set(session.execute(select(Variant.color).distinct()).scalars()) <= set(COLORS)

        sizes_by_category = {}
        for category, size in session.execute(
            select(Category.name, Variant.size).join(Product, Product.category_id == Category.id)
            .join(Variant, Variant.product_id == Product.id).distinct()
        ):
            sizes_by_category.setdefault(category, set()).add(size)
        assert sizes_by_category["Apparel"] == set(CLOTHING_SIZES)
        assert sizes_by_category["Shoes"] <= set(SHOE_SIZES) and {"36", "46"} <= sizes_by_category["Shoes"]
        assert sizes_by_category["Electronics"] == {"One Size"}

        assert _count(session, Variant, Variant.stock == 0) > 0
        assert _count(session, Variant, Variant.stock > 0) > _count(session, Variant, Variant.stock == 0)
        assert _count(session, Variant, Variant.compare_at_price_cents.is_not(None)) > 0
        assert _count(session, Variant, Variant.compare_at_price_cents <= Variant.price_cents) == 0
        assert _count(session, Variant, Variant.price_cents < 100) == 0


def test_reviews_and_customers_look_real(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        ratings = dict(session.execute(select(Review.rating, func.count()).group_by(Review.rating)).all())
        assert set(ratings) == {1, 2, 3, 4, 5} and ratings[5] > ratings[1]
        assert _count(session, Review, func.length(Review.body) < 10) == 0
        customers = session.execute(select(Customer)).scalars().all()
        assert len({c.email for c in customers}) == len(customers)
        for c in customers:
            assert re.fullmatch(r"[a-z.']+\d*@example\.(com|org|net)", c.email), c.email
            assert c.first_name and c.last_name and c.phone and c.address_line and c.city and c.postcode
            assert set(c.preferences) >= {"size", "liked_colors"}


def test_orders_are_spread_over_the_last_twelve_months(demo_store):
    engine, _ = demo_store
    now = datetime.combine(TODAY, datetime.min.time())
    with session_scope(engine) as session:
        placed = session.execute(select(Order.placed_at)).scalars().all()
        numbers = session.execute(select(Order.number).order_by(Order.placed_at, Order.id)).scalars().all()
    assert min(placed) >= now - timedelta(days=366) and max(placed) <= now
    assert len({(p.year, p.month) for p in placed}) >= 12
    assert all(re.fullmatch(r"SH-1\d{5}", n) for n in numbers)
    assert numbers[0] == "SH-100001" and numbers == sorted(numbers)


def test_order_totals_add_up_and_lines_match_variant_prices(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        item_sums = dict(session.execute(
            select(OrderItem.order_id, func.sum(OrderItem.quantity * OrderItem.unit_price_cents))
            .group_by(OrderItem.order_id)
        ).all())
        orders = session.execute(select(Order)).scalars().all()
        for order in orders:
            assert order.subtotal_cents == item_sums[order.id], order.number
            assert order.total_cents == (order.subtotal_cents - order.discount_cents + order.shipping_cents
                                         + order.tax_cents), order.number
            assert 0 <= order.discount_cents <= order.subtotal_cents
            assert order.tax_cents == ((order.subtotal_cents - order.discount_cents) * 8 + 50) // 100
        mismatched = session.execute(
            select(func.count()).select_from(OrderItem).join(Variant, Variant.id == OrderItem.variant_id)
            .where(Variant.price_cents != OrderItem.unit_price_cents)
        ).scalar_one()
        assert mismatched == 0
        assert _count(session, Order, Order.discount_code_id.is_not(None)) > 0
        assert _count(session, Order, Order.shipping_cents == 0) > 0


def test_shipping_and_delivery_fields_follow_the_status(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        for order in session.execute(select(Order)).scalars():
            shipped = order.status in ("shipped", "delivered", "return_requested", "returned", "refunded")
            assert bool(order.carrier and order.tracking_number and order.estimated_delivery) == shipped, order.number
            delivered = order.status in ("delivered", "return_requested", "returned", "refunded")
            assert (order.delivered_at is not None) == delivered, order.number
            if delivered:
                assert order.placed_at < order.delivered_at <= datetime.combine(TODAY, datetime.min.time())
            if order.status == "shipped":
                assert order.estimated_delivery > TODAY


def test_returns_and_refunds_exist_exactly_for_returned_orders(demo_store):
    engine, _ = demo_store
    returning = ("return_requested", "returned", "refunded")
    with session_scope(engine) as session:
        with_return = set(session.execute(select(Return.order_id)).scalars())
        with_refund = set(session.execute(select(Refund.order_id)).scalars())
        expected = set(session.execute(select(Order.id).where(Order.status.in_(returning))).scalars())
        assert with_return == expected == with_refund
        for ret in session.execute(select(Return)).scalars():
            order = ret.order
            assert ret.items and all(0 < i.quantity <= i.order_item.quantity for i in ret.items)
            assert all(i.order_item.order_id == order.id for i in ret.items)
            refund = order.refunds[0]
            assert 0 < refund.amount_cents <= order.total_cents
            if order.status == "refunded":
                assert ret.status == "refunded" and refund.status == "completed" and refund.completed_at
            else:
                assert refund.status == "pending" and refund.completed_at is None
        assert _count(session, ReturnItem) >= len(with_return)


def test_discount_codes_cover_the_usual_cases(demo_store):
    engine, _ = demo_store
    now = datetime.combine(TODAY, datetime.min.time())
    with session_scope(engine) as session:
        codes = session.execute(select(DiscountCode)).scalars().all()
    assert 4 <= len(codes) <= 10
    public_active = [c for c in codes if c.public and (c.ends_at is None or c.ends_at > now)]
    assert len(public_active) >= 3
    assert any(c.ends_at is not None and c.ends_at < now for c in codes)
    assert any(c.min_spend_cents > 0 for c in codes)
    assert any(c.kind == "free_shipping" for c in codes)
    assert all(c.usage_limit is None or c.times_used <= c.usage_limit for c in codes)


def test_the_demo_customer_has_an_order_in_every_status(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        statuses = set(session.execute(
            select(Order.status).join(Customer).where(Customer.email == "alex.morgan@example.com")
        ).scalars())
    assert statuses == set(ORDER_STATUSES)
