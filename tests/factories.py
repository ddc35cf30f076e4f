"""Small, explicit catalog data for tests that assert exact replies."""
from typing import Iterable, Optional, Tuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.models import Brand, Category, Product, Review, Variant

# (color, size, price in cents, stock)
VariantSpec = Tuple[str, str, int, int]


def _get_or_create(session: Session, model, **fields):
    existing = session.execute(select(model).filter_by(**fields)).scalar_one_or_none()
    if existing:
        return existing
    row = model(**fields)
    session.add(row)
    session.flush()
    return row


def add_product(
    session: Session,
    title: str,
    category: str,
    product_type: str,
    brand: str,
    variants: Iterable[VariantSpec],
    ratings: Iterable[int] = (),
    handle: Optional[str] = None,
) -> Product:
    handle = handle or title.lower().replace(" ", "-")
    product = Product(
        handle=handle,
        title=title,
        description=f"{title} by {brand}.",
        category=_get_or_create(session, Category, name=category, slug=category.lower()),
        brand=_get_or_create(session, Brand, name=brand),
        product_type=product_type,
        image_url=f"/images/products/{handle}.svg",
    )
    for color, size, price_cents, stock in variants:
        product.variants.append(Variant(color=color, size=size, price_cents=price_cents, stock=stock))
    for number, rating in enumerate(ratings, start=1):
        product.reviews.append(Review(rating=rating, author_name=f"Reviewer {number}", body="Nice."))
    session.add(product)
    session.flush()
    return product
