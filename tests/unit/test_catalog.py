"""Catalog search and product pages over a small, hand-made catalog with known answers."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from shop.catalog import SearchFilters, category_names, format_price, get_product, search_products
from shop.db import session_scope
from shop.models import Brand, Category, Product, Review, Variant

# handle: (title, product_type, category, [(color, size, price_cents, stock)], published)
CATALOG = {
    "red-canvas-sneakers": ("Red Canvas Sneakers", "Sneakers", "Shoes",
                            [("red", "42", 5900, 5), ("white", "42", 6400, 0)], True),
    "court-classic": ("Court Classic", "Sneaker", "Shoes", [("black", "41", 9500, 2)], True),
    "tempo-running-shoes": ("Tempo Running Shoes", "Running Shoes", "Shoes", [("red", "43", 12000, 4)], True),
    "glide-jeans": ("Glide Jeans", "Jeans", "Apparel", [("blue", "M", 4900, 8)], True),
    "dune-jacket": ("Dune Jacket", "Jacket", "Apparel", [("black", "L", 15000, 1)], True),
    "summer-dress": ("Summer Dress", "Dress", "Apparel", [("red", "S", 7500, 3)], True),
    "draft-sneakers": ("Draft Sneakers", "Sneakers", "Shoes", [("red", "40", 1000, 9)], False),
}
PUBLISHED = {h for h, spec in CATALOG.items() if spec[4]}


@pytest.fixture
def catalog(engine):
    with session_scope(engine) as session:
        categories = {name: Category(name=name, slug=name.lower()) for name in ("Shoes", "Apparel")}
        brand = Brand(name="Kestrel")
        for handle, (title, ptype, category, variants, published) in CATALOG.items():
            product = Product(
                handle=handle, title=title, product_type=ptype, category=categories[category], brand=brand,
                published=published, image_url=f"/images/products/{handle}.svg",
                description=f"{title} by Kestrel.",
            )
            product.variants = [
                Variant(sku=f"{handle}-{c}-{s}", color=c, size=s, price_cents=p, stock=st,
                        compare_at_price_cents=18000 if handle == "dune-jacket" else None)
                for c, s, p, st in variants
            ]
            session.add(product)
            if handle == "red-canvas-sneakers":
                product.reviews = [Review(rating=5, author_name="Ava L.", body="Great."),
                                   Review(rating=4, author_name="Omar P.", body="Runs small.")]
    return engine


def search(engine, **filters):
    with session_scope(engine) as session:
        return search_products(session, SearchFilters(**{"limit": 50, **filters}))


def handles(result) -> set:
    return {p.handle for p in result.products}


@pytest.mark.parametrize("text", ["sneakers", "Sneakers", "sneaker", "SNEAKERS!"])
def test_text_search_finds_sneakers_by_type_singular_or_plural(catalog, text):
    result = search(catalog, text=text)
    assert handles(result) == {"red-canvas-sneakers", "court-classic"}
    assert result.total == 2


def test_category_term_matches_product_type_and_category_name(catalog):
    assert handles(search(catalog, category="sneakers")) == {"red-canvas-sneakers", "court-classic"}
    assert handles(search(catalog, category="Shoes")) == {"red-canvas-sneakers", "court-classic", "tempo-running-shoes"}
    assert handles(search(catalog, category="dresses")) == {"summer-dress"}


def test_unpublished_products_are_never_found(catalog):
    assert "draft-sneakers" not in handles(search(catalog, text="draft"))
    assert search(catalog).total == len(PUBLISHED)


def test_colour_filter_is_case_insensitive_and_shows_the_matching_price(catalog):
    result = search(catalog, color=" RED ")
    assert handles(result) == {"red-canvas-sneakers", "tempo-running-shoes", "summer-dress"}
    sneakers = next(p for p in result.products if p.handle == "red-canvas-sneakers")
    assert sneakers.price_cents == 5900
    assert sneakers.colors == ("red", "white")
    assert sneakers.rating == 4.5 and sneakers.review_count == 2


def test_red_sneakers_under_80_dollars(catalog):
    result = search(catalog, text="sneakers", color="red", price_max_cents=8000)
    assert [p.title for p in result.products] == ["Red Canvas Sneakers"]


def test_price_range_filters_on_variant_prices(catalog):
    result = search(catalog, category="shoes", price_min_cents=8000)
    assert handles(result) == {"court-classic", "tempo-running-shoes"}
    result = search(catalog, price_min_cents=5000, price_max_cents=8000)
    assert handles(result) == {"red-canvas-sneakers", "summer-dress"}


def test_in_stock_only_hides_sold_out_variants(catalog):
    assert handles(search(catalog, color="white")) == {"red-canvas-sneakers"}
    assert search(catalog, color="white", in_stock_only=True).total == 0


def test_results_are_sorted_by_price_and_paged_without_overlap(catalog):
    pages = [search(catalog, limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert all(page.total == len(PUBLISHED) for page in pages)
    seen = [p.handle for page in pages for p in page.products]
    assert len(seen) == len(set(seen)) == len(PUBLISHED)
    prices = [p.price_cents for page in pages for p in page.products]
    assert prices == sorted(prices)
    assert [p.handle for p in pages[0].products] == ["glide-jeans", "red-canvas-sneakers"]
    assert pages[3].products == []


def test_no_results_is_an_empty_answer_not_an_error(catalog):
    result = search(catalog, text="unicorn saddle")
    assert result.total == 0 and result.products == []


@pytest.mark.parametrize("text", [
    "'; DROP TABLE products; --",
    "\" OR 1=1 --",
    "red%' OR '1'='1",
    "100%_off",
])
def test_sql_looking_text_is_just_text(catalog, text):
    result = search(catalog, text=text)
    assert result.total == 0
    with session_scope(catalog) as session:
        assert session.execute(select(func.count()).select_from(Product)).scalar_one() == len(CATALOG)
    assert search(catalog, text="sneakers").total == 2


def test_ten_kilobytes_of_query_text_answers_quickly(catalog):
    started = time.monotonic()
    assert handles(search(catalog, text="sneakers " * 1200)) == {"red-canvas-sneakers", "court-classic"}
    assert search(catalog, text="x" * 10_240).total == 0
    assert time.monotonic() - started < 5


def test_get_product_loads_variants_brand_category_and_reviews(catalog):
    with session_scope(catalog) as session:
        product = get_product(session, "red-canvas-sneakers")
        assert product.title == "Red Canvas Sneakers"
        assert product.brand.name == "Kestrel" and product.category.name == "Shoes"
        assert [(v.color, v.size, v.price_cents) for v in product.variants] == [("red", "42", 5900), ("white", "42", 6400)]
        assert sorted(r.rating for r in product.reviews) == [4, 5]


@pytest.mark.parametrize("handle", ["no-such-product", "", "x" * 10_000, "red-canvas-sneakers' OR '1'='1"])
def test_get_product_returns_none_for_unknown_handles(catalog, handle):
    with session_scope(catalog) as session:
        assert get_product(session, handle) is None


def test_category_names_are_sorted(catalog):
    with session_scope(catalog) as session:
        assert category_names(session) == ["Apparel", "Shoes"]


@pytest.mark.parametrize("cents, text", [(0, "$0.00"), (5999, "$59.99"), (123456, "$1,234.56")])
def test_format_price(cents, text):
    assert format_price(cents) == text
