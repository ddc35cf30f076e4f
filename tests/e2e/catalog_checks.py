"""Checks that what the bot showed is really in the shop database."""
from typing import Iterable

from sqlalchemy import func, select

from shop.db import session_scope
from shop.models import Product, Variant


def assert_are_red_sneakers_under(engine, titles: Iterable[str], max_cents: int) -> None:
    titles = list(titles)
    assert titles, "the bot listed no products"
    with session_scope(engine) as session:
        for title in titles:
            cheapest_red = session.execute(
                select(func.min(Variant.price_cents))
                .join(Product)
                .where(Product.title == title, func.lower(Variant.color) == "red")
            ).scalar_one()
            assert cheapest_red is not None, f"{title!r} is not in the shop as a red product"
            assert cheapest_red <= max_cents, f"{title!r} has no red variant under the budget"
            product_text = session.execute(
                select(Product.product_type, Product.title).where(Product.title == title)
            ).first()
            assert "sneaker" in " ".join(product_text).lower(), f"{title!r} is not a sneaker"
