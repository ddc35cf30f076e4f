"""From "I need running shoes" to an in-stock variant with reviews and a cross-sell, over REST."""
import re

from sqlalchemy import select

from shop.db import session_scope
from shop.models import Product, Variant
from shop.recommendations import frequently_bought_together
from tests.e2e.test_rest import say, text_of


def test_running_shoes_to_a_variant_in_stock_with_reviews_and_cross_sell(stack):
    sender = "discovery-shopper"
    first = text_of(say(stack, sender, "I need running shoes"))
    if "Which size" in first:
        first = text_of(say(stack, sender, "size 42"))
    listed = re.findall(r"^1\. (.+?) by ", first, re.MULTILINE)
    assert listed, first
    product_title = listed[0]

    details = text_of(say(stack, sender, "tell me more about the first one"))
    assert details.startswith(f"{product_title} by ")
    assert "In stock:" in details and "with standard shipping" in details

    with session_scope(stack.engine()) as session:
        handle = session.execute(select(Product.handle).where(Product.title == product_title)).scalar_one()
        together = frequently_bought_together(session, handle)
        size_in_stock = session.execute(
            select(Variant.size).join(Product)
            .where(Product.title == product_title, Variant.stock > 0).order_by(Variant.size)
        ).scalars().first()
    assert together, "the seeded orders should give this product a cross-sell"
    assert f"Frequently bought together: {together[0].title}" in details

    availability = text_of(say(stack, sender, f"is it available in size {size_in_stock}?"))
    assert availability.startswith(f"Yes! The {product_title}") and f"size {size_in_stock}" in availability

    reviews = text_of(say(stack, sender, "what do people say about it"))
    assert reviews.startswith(f"The {product_title} ")
    assert "/5 from" in reviews or "no reviews yet" in reviews
