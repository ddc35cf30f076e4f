"""Catalog queries: product search with filters, product pages, featured products."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from shop.models import Brand, Category, Product, Review, Variant

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8


@dataclass(frozen=True)
class ProductSummary:
    handle: str
    title: str
    brand: str
    category: str
    price_cents: int
    compare_at_price_cents: Optional[int]
    colors: Tuple[str, ...]
    sizes: Tuple[str, ...]
    in_stock: bool
    rating: Optional[float]
    review_count: int
    image_url: str

    @property
    def url_path(self) -> str:
        return f"/products/{self.handle}"


@dataclass(frozen=True)
class SearchFilters:
    text: str = ""
    category: Optional[str] = None
    color: Optional[str] = None
    price_min_cents: Optional[int] = None
    price_max_cents: Optional[int] = None
    in_stock_only: bool = False
    limit: int = 5
    offset: int = 0


@dataclass
class SearchResult:
    products: List[ProductSummary]
    total: int
    filters: SearchFilters = field(default_factory=SearchFilters)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column, term: str):
    return func.lower(column).like(f"%{_escape_like(term.lower())}%", escape="\\")


def _singular(word: str) -> str:
    """'sneakers' should find 'Sneaker'; 'dresses' should find 'Dress'."""
    lowered = word.lower()
    if lowered.endswith("sses") or lowered.endswith("shes") or lowered.endswith("ches"):
        return lowered[:-2]
    if lowered.endswith("s") and not lowered.endswith("ss") and len(lowered) > 3:
        return lowered[:-1]
    return lowered


def _search_terms(text: str) -> List[str]:
    words = [w for w in "".join(c if c.isalnum() else " " for c in text[:MAX_QUERY_LENGTH]).split() if w]
    return [_singular(w) for w in words[:MAX_TERMS]]


def _term_matches(term: str):
    return or_(
        _contains(Product.title, term),
        _contains(Product.product_type, term),
        _contains(Product.tags, term),
        _contains(Category.name, term),
        _contains(Brand.name, term),
    )


def search_products(session: Session, filters: SearchFilters) -> SearchResult:
    """Products matching every given filter, cheapest matching variant first."""
    variant_conditions = []
    if filters.color:
        variant_conditions.append(func.lower(Variant.color) == filters.color.strip().lower())
    if filters.price_min_cents is not None:
        variant_conditions.append(Variant.price_cents >= filters.price_min_cents)
    if filters.price_max_cents is not None:
        variant_conditions.append(Variant.price_cents <= filters.price_max_cents)
    if filters.in_stock_only:
        variant_conditions.append(Variant.stock > 0)

    product_conditions = [Product.published.is_(True)]
    for term in _search_terms(filters.text):
        product_conditions.append(_term_matches(term))
    if filters.category:
        category_terms = _search_terms(filters.category)
        if category_terms:
            product_conditions.append(and_(*(_term_matches(t) for t in category_terms)))

    matching = (
        select(Product.id.label("product_id"), func.min(Variant.price_cents).label("price"))
        .join(Variant, Variant.product_id == Product.id)
        .outerjoin(Category, Category.id == Product.category_id)
        .outerjoin(Brand, Brand.id == Product.brand_id)
        .where(and_(*product_conditions, *variant_conditions))
        .group_by(Product.id)
        .subquery()
    )
    total = session.execute(select(func.count()).select_from(matching)).scalar_one()
    rows = session.execute(
        select(matching.c.product_id)
        .order_by(matching.c.price, matching.c.product_id)
        .limit(max(1, min(filters.limit, 50)))
        .offset(max(0, filters.offset))
    ).all()
    ids = [row.product_id for row in rows]
    summaries = {s.handle: s for s in _summaries(session, ids, filters)}
    ordered_handles = _handles_in_order(session, ids)
    return SearchResult([summaries[h] for h in ordered_handles], total, filters)


def _handles_in_order(session: Session, ids: Sequence[int]) -> List[str]:
    by_id = dict(session.execute(select(Product.id, Product.handle).where(Product.id.in_(ids))).all())
    return [by_id[i] for i in ids]


def _rating_stats(session: Session, ids: Sequence[int]) -> dict:
    rows = session.execute(
        select(Review.product_id, func.avg(Review.rating), func.count(Review.id))
        .where(Review.product_id.in_(ids))
        .group_by(Review.product_id)
    ).all()
    return {pid: (round(float(avg), 1), int(count)) for pid, avg, count in rows}


def _summaries(
    session: Session, ids: Sequence[int], filters: Optional[SearchFilters] = None
) -> List[ProductSummary]:
    if not ids:
        return []
    products = (
        session.execute(
            select(Product)
            .where(Product.id.in_(ids))
            .options(selectinload(Product.variants), selectinload(Product.brand), selectinload(Product.category))
        )
        .scalars()
        .all()
    )
    ratings = _rating_stats(session, ids)
    return [_summarise(p, ratings.get(p.id), filters) for p in products]


def _summarise(product: Product, rating: Optional[tuple], filters: Optional[SearchFilters]) -> ProductSummary:
    variants = list(product.variants)
    shown = variants
    if filters is not None:
        shown = [v for v in variants if _variant_fits(v, filters)] or variants
    cheapest = min(shown, key=lambda v: v.price_cents)
    return ProductSummary(
        handle=product.handle,
        title=product.title,
        brand=product.brand.name if product.brand else "",
        category=product.category.name if product.category else "",
        price_cents=cheapest.price_cents,
        compare_at_price_cents=cheapest.compare_at_price_cents,
        colors=tuple(dict.fromkeys(v.color for v in variants if v.color)),
        sizes=tuple(dict.fromkeys(v.size for v in variants if v.size)),
        in_stock=any(v.stock > 0 for v in variants),
        rating=rating[0] if rating else None,
        review_count=rating[1] if rating else 0,
        image_url=product.image_url,
    )


def _variant_fits(variant: Variant, filters: SearchFilters) -> bool:
    if filters.color and variant.color.lower() != filters.color.strip().lower():
        return False
    if filters.price_min_cents is not None and variant.price_cents < filters.price_min_cents:
        return False
    if filters.price_max_cents is not None and variant.price_cents > filters.price_max_cents:
        return False
    return True


def get_product(session: Session, handle: str) -> Optional[Product]:
    """The product with its variants, brand, category and reviews loaded, or None."""
    return session.execute(
        select(Product)
        .where(Product.handle == handle[:200])
        .options(
            selectinload(Product.variants),
            selectinload(Product.brand),
            selectinload(Product.category),
            selectinload(Product.reviews),
        )
    ).scalar_one_or_none()


def featured_products(session: Session, limit: int = 12) -> List[ProductSummary]:
    """Best-reviewed products in stock, for the shop's home page."""
    ids = [
        row[0]
        for row in session.execute(
            select(Product.id)
            .outerjoin(Review, Review.product_id == Product.id)
            .where(Product.published.is_(True), Product.variants.any())
            .group_by(Product.id)
            .order_by(func.count(Review.id).desc(), Product.id)
            .limit(limit)
        ).all()
    ]
    by_handle = {s.handle: s for s in _summaries(session, ids)}
    return [by_handle[h] for h in _handles_in_order(session, ids)]


def category_names(session: Session) -> List[str]:
    return list(session.execute(select(Category.name).order_by(Category.name)).scalars())


def format_price(cents: int, currency_symbol: str = "$") -> str:
    return f"{currency_symbol}{cents // 100:,}.{cents % 100:02d}"
