"""Answers about one product (facts, availability, reviews) over small, explicit data on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import select

from shop.db import session_scope
from shop.models import Brand, Category, Product, Review, Variant
from shop.products import (
    add_business_days,
    delivery_days,
    first_sentence,
    normalise_size,
    product_facts,
    review_summary,
    variant_availability,
)

FRIDAY = date(2024, 6, 14)


def make_product(session, handle, *, product_type="T-Shirt", category="Apparel", brand="Kestrel",
                 variants=(("red", "M", 2500, 3),), reviews=(), published=True, material="cotton",
                 gender="unisex", compare_at=None):
    """variants: (color, size, price_cents, stock); reviews: (rating, body, created_at)."""
    category_row = session.execute(select(Category).filter_by(name=category)).scalar_one_or_none() or Category(
        name=category, slug=category.lower())
    brand_row = session.execute(select(Brand).filter_by(name=brand)).scalar_one_or_none() or Brand(name=brand)
    product = Product(handle=handle, title=handle.replace("-", " ").title(), description=f"About {handle}.",
                      category=category_row, brand=brand_row, product_type=product_type, material=material,
                      gender=gender, published=published, image_url=f"/images/products/{handle}.svg")
    product.variants = [Variant(sku=f"{handle}-{c}-{s}", color=c, size=s, price_cents=p, stock=st,
                                compare_at_price_cents=compare_at) for c, s, p, st in variants]
    product.reviews = [Review(rating=r, body=body, title=f"{r} stars", author_name=f"Reviewer {i}", created_at=when)
                       for i, (r, body, when) in enumerate(reviews, 1)]
    session.add(product)
    session.flush()
    return product


@pytest.fixture
def tee(engine):
    """A T-shirt with sizes inserted out of chart order, one variant sold out, one sale price, reviews."""
    with session_scope(engine) as session:
        make_product(
            session, "harbor-tee",
            variants=[("red", "L", 2500, 0), ("red", "M", 2500, 3), ("blue", "XL", 2900, 4),
                      ("blue", "S", 2900, 5), ("blue", "M", 2900, 2), ("red", "S", 2500, 1)],
            compare_at=3500,
            reviews=[
                (5, "Softest tee I own. Washes well too.", datetime(2024, 5, 1)),
                (5, "Great colour! Fits true to size.", datetime(2024, 6, 1)),
                (4, "Nice fabric. A bit long.", datetime(2024, 6, 10)),
                (2, "Shrank after one wash. Disappointed.", datetime(2024, 4, 2)),
                (1, "Seams came apart. Returned it.", datetime(2024, 3, 2)),
            ],
        )
        make_product(session, "hidden-draft", published=False)
        make_product(session, "plain-cap", product_type="Cap", category="Accessories",
                     variants=[("black", "One Size", 1500, 0), ("white", "One Size", 1500, 7)])
        make_product(session, "trail-runner", product_type="Running Shoes", category="Shoes",
                     variants=[("Red", "40", 9000, 2), ("Red", "42", 9000, 0), ("Red", "43", 9000, 1),
                               ("Red", "46", 9000, 6), ("Black", "42", 9500, 4), ("Grey", "41", 9000, 0)])
    return engine


def test_product_facts_lists_exactly_the_variants_a_shopper_can_buy(tee):
    with session_scope(tee) as session:
        facts = product_facts(session, "harbor-tee", today=FRIDAY)
    assert facts.title == "Harbor Tee"
    assert (facts.brand, facts.category, facts.product_type, facts.material) == ("Kestrel", "Apparel", "T-Shirt",
                                                                                 "cotton")
    assert facts.variants_in_stock == {"red": ("S", "M"), "blue": ("S", "M", "XL")}
    assert facts.out_of_stock == ("red / L",)
    assert facts.sizes == ("S", "M", "L", "XL")
    assert facts.colors == ("red", "blue")
    assert facts.total_stock == 15
    assert (facts.price_min_cents, facts.price_max_cents, facts.compare_at_price_cents) == (2500, 2900, 3500)
    assert facts.on_sale and facts.in_stock
    assert (facts.rating, facts.review_count) == (3.4, 5)  # 17 / 5
    # Highest rated, then the most recent of those: the 1 June five-star review's first sentence.
    assert facts.review_excerpt == "Great colour!"
    assert facts.url_path == "/products/harbor-tee"


def test_product_facts_delivery_skips_the_weekend(tee, monkeypatch):
    monkeypatch.delenv("SHOP_STANDARD_DELIVERY_DAYS", raising=False)
    monkeypatch.delenv("SHOP_EXPRESS_DELIVERY_DAYS", raising=False)
    with session_scope(tee) as session:
        facts = product_facts(session, "harbor-tee", today=FRIDAY)
    assert (facts.delivery.earliest, facts.delivery.latest) == (date(2024, 6, 19), date(2024, 6, 21))
    assert (facts.delivery.min_business_days, facts.delivery.max_business_days) == (3, 5)
    assert (facts.express_delivery.earliest, facts.express_delivery.latest) == (date(2024, 6, 17), date(2024, 6, 18))

    monkeypatch.setenv("SHOP_STANDARD_DELIVERY_DAYS", "2-7")
    with session_scope(tee) as session:
        facts = product_facts(session, "harbor-tee", today=date(2024, 6, 15))  # a Saturday
    assert (facts.delivery.earliest, facts.delivery.latest) == (date(2024, 6, 18), date(2024, 6, 25))


def test_delivery_settings_refuse_nonsense(monkeypatch):
    monkeypatch.setenv("SHOP_EXPRESS_DELIVERY_DAYS", "soon")
    with pytest.raises(ValueError, match="SHOP_EXPRESS_DELIVERY_DAYS"):
        delivery_days()
    monkeypatch.setenv("SHOP_EXPRESS_DELIVERY_DAYS", "5-2")
    with pytest.raises(ValueError, match="fewer to more"):
        delivery_days()
    assert add_business_days(FRIDAY, 0) == FRIDAY
    assert add_business_days(FRIDAY, 1) == date(2024, 6, 17)


def test_unknown_or_unpublished_products_have_no_facts(tee):
    with session_scope(tee) as session:
        assert product_facts(session, "no-such-thing") is None
        assert product_facts(session, "hidden-draft") is None
        assert product_facts(session, "") is None
        assert review_summary(session, "hidden-draft") is None
        assert variant_availability(session, "hidden-draft", "red").found is False
        # Handles typed with stray spaces or capitals still work.
        assert product_facts(session, "  Harbor-Tee ").handle == "harbor-tee"


def test_review_excerpt_is_cut_at_a_word_within_140_characters():
    long = "This " + "really " * 40 + "great shirt. Second sentence."
    excerpt = first_sentence(long)
    assert len(excerpt) <= 140
    assert excerpt.endswith("\u2026") and excerpt.startswith("This really")
    assert " really\u2026" in excerpt or excerpt.endswith("really\u2026")
    assert first_sentence("Short one. Another.") == "Short one."
    assert first_sentence("  ") == ""


@pytest.mark.parametrize("said, catalog", [
    ("extra large", "XL"), ("Extra-Large", "XL"), ("x-large", "XL"), ("XL", "XL"), ("xxl", "XXL"),
    ("2XL", "XXL"), ("medium", "M"), ("Medium", "M"), ("m", "M"), ("small", "S"), ("extra small", "XS"),
    ("large", "L"), ("size 42", "42"), ("Size 42", "42"), ("EU 42", "42"), ("42", "42"), ("42.0", "42"),
    ("42.5", "42.5"), ("one size", "One Size"), ("4-5 years", "4-5Y"), ("4-5y", "4-5Y"), ("in size M", "M"),
])
def test_sizes_are_normalised_the_way_the_catalog_writes_them(said, catalog):
    assert normalise_size(said) == catalog


def test_variant_in_stock_reports_its_stock(tee):
    with session_scope(tee) as session:
        answer = variant_availability(session, "harbor-tee", "Blue", "small")
    assert answer.found and answer.exists and answer.in_stock
    assert (answer.color, answer.size, answer.stock) == ("blue", "S", 5)
    assert [v.label for v in answer.variants] == ["blue / S"]
    assert answer.other_sizes == ("M", "XL")
    assert answer.other_colors == ("red",)


def test_sold_out_variant_offers_the_nearest_sizes_and_other_colours(tee):
    with session_scope(tee) as session:
        answer = variant_availability(session, "trail-runner", "red", "size 42")
    assert answer.exists and not answer.in_stock and answer.stock == 0
    assert (answer.color, answer.size) == ("Red", "42")  # the catalog's spelling
    assert answer.other_sizes == ("43", "40", "46")  # nearest first, sold-out sizes left out
    assert answer.other_colors == ("Black",)
    assert answer.sizes == ("40", "41", "42", "43", "46")


def test_colour_or_size_the_product_never_comes_in(tee):
    with session_scope(tee) as session:
        green = variant_availability(session, "harbor-tee", "green", "M")
        huge = variant_availability(session, "harbor-tee", "red", "XXL")
    assert not green.color_offered and green.size_offered and not green.exists and not green.in_stock
    assert green.other_colors == ("red", "blue")  # both come in M and have it in stock
    assert green.other_sizes == ()
    assert huge.color_offered and not huge.size_offered and not huge.exists
    assert huge.other_sizes == ("M", "S")  # red in stock, nearest to XXL first


def test_only_a_colour_or_only_a_size_asked(tee):
    with session_scope(tee) as session:
        red = variant_availability(session, "harbor-tee", color="RED")
        large = variant_availability(session, "harbor-tee", size="large")
        cap = variant_availability(session, "plain-cap", color="black")
        nothing = variant_availability(session, "harbor-tee")
        unknown = variant_availability(session, "no-such-thing", "red", "M")
    assert red.exists and red.in_stock and red.stock == 4
    assert red.other_sizes == ("S", "M")
    assert red.other_colors == ("blue",)
    assert large.exists and not large.in_stock and large.size == "L"
    assert large.other_colors == ()  # nobody has L in stock
    assert large.other_sizes == ("M", "XL", "S")
    assert cap.exists and not cap.in_stock and cap.other_colors == ("white",)
    assert nothing.in_stock and nothing.stock == 15
    assert not unknown.found and not unknown.exists and unknown.size == "M"


def test_review_summary_counts_stars_and_quotes_both_sides(tee):
    with session_scope(tee) as session:
        summary = review_summary(session, "harbor-tee")
    assert summary.count == 5 and summary.average == 3.4
    assert dict(summary.distribution) == {5: 2, 4: 1, 3: 0, 2: 1, 1: 1}
    assert summary.positive.rating == 5 and summary.positive.text == "Great colour!"
    assert summary.critical.rating == 1 and summary.critical.text == "Seams came apart."


def test_review_summary_without_reviews_or_complaints(tee):
    with session_scope(tee) as session:
        none = review_summary(session, "plain-cap")
        make_product(session, "loved-mug", product_type="Mug", category="Home",
                     reviews=[(5, "Perfect mug.", datetime(2024, 1, 1)), (4, "Good.", datetime(2024, 2, 1))])
        loved = review_summary(session, "loved-mug")
        facts = product_facts(session, "plain-cap", today=FRIDAY)
    assert none.count == 0 and none.average is None and none.positive is None and none.critical is None
    assert dict(none.distribution) == {5: 0, 4: 0, 3: 0, 2: 0, 1: 0}
    assert facts.rating is None and facts.review_count == 0 and facts.review_excerpt is None
    assert loved.average == 4.5 and loved.positive.text == "Perfect mug." and loved.critical is None
