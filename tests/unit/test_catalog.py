"""Catalog search over a small, hand-made catalog with known answers, on SQLite and PostgreSQL.

Ranking, every filter, colour families, sorting, paging, typo tolerance, relaxation, facets and
bad input. The catalog is built once per backend (module scope) and only read here; the tests
that change data live in test_search_index.py.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from shop.catalog import (
    Facets,
    SearchFilters,
    category_names,
    clean_filters,
    facets,
    featured_products,
    format_price,
    get_product,
    most_useful_question,
    search_products,
    search_with_relaxation,
    summaries_for_handles,
)
from shop.db import session_scope
from shop.models import Brand, Category, Product, Review, Variant
from tests.unit.conftest import BACKENDS, backend_engine

NOW = datetime(2024, 6, 1, 12, 0, 0)

# handle: (title, product_type, category, brand, gender, material, tags, description,
#          [(color, size, price_cents, stock)], ratings, days old, published)
CATALOG = {
    "red-canvas-sneakers": (
        "Red Canvas Sneakers", "Sneakers", "Shoes", "Kestrel", "unisex", "canvas", "sneakers, shoes, unisex",
        "Light canvas sneakers for warm days.",
        [("red", "42", 5900, 5), ("red", "43", 5900, 0), ("white", "42", 6400, 0)], [5, 4], 10, True),
    "court-classic": (
        "Court Classic", "Sneaker", "Shoes", "Stride Lab", "men", "leather", "sneaker, shoes, men",
        "A clean leather court shoe.",
        [("black", "41", 9500, 2), ("navy", "42", 9900, 3)], [3], 40, True),
    "tempo-running-shoes": (
        "Tempo Running Shoes", "Running Shoes", "Shoes", "Stride Lab", "women", "engineered mesh",
        "running shoes, shoes, women", "Responsive foam for daily miles.",
        [("red", "38", 12000, 4), ("blue", "39", 12000, 1)], [5, 5, 4], 5, True),
    "glide-jeans": (
        "Glide Jeans", "Jeans", "Apparel", "Northwind", "men", "stretch denim", "jeans, apparel, men",
        "Five-pocket jeans with a straight leg.",
        [("blue", "M", 4900, 8), ("blue", "L", 4900, 0)], [], 100, True),
    "dune-leather-jacket": (
        "Dune Leather Jacket", "Jacket", "Apparel", "Northwind", "men", "leather", "jacket, apparel, men",
        "Lined for warmth without bulk.",
        [("black", "L", 15000, 1), ("brown", "XL", 16000, 2)], [4], 60, True),
    "summer-dress": (
        "Summer Dress", "Dress", "Apparel", "Alder & Co", "women", "linen", "dress, apparel, women",
        "Midi length with hidden pockets.",
        [("red", "S", 7500, 3), ("navy", "M", 7900, 2)], [], 1, True),
    "harbor-hoodie": (
        "Harbor Hoodie", "Hoodie", "Apparel", "Kestrel", "unisex", "organic cotton", "hoodie, apparel, unisex",
        "Brushed fleece inside.",
        [("grey", "XL", 5500, 4), ("light blue", "M", 5500, 2)], [2], 20, True),
    "studio-wrap-top": (
        "Women's Studio Wrap Top", "Top", "Apparel", "Alder & Co", "women", "viscose", "top, apparel, women",
        "A wrap top for women, in soft viscose.",
        [("pink", "S", 3900, 6)], [], 30, True),
    "canvas-tote-bag": (
        "Canvas Tote Bag", "Tote Bag", "Accessories", "Alder & Co", "unisex", "canvas", "tote, accessories",
        "Roomy enough to carry your sneakers to the gym.",
        [("beige", "One Size", 2500, 9)], [], 15, True),
    "aero-backpack": (
        "Aero Backpack", "Backpack", "Accessories", "Stride Lab", "unisex", "nylon", "backpack, accessories",
        "Padded sleeve for a laptop.",
        [("black", "One Size", 4500, 3), ("green", "One Size", 6500, 5)], [], 50, True),
    "trail-boots": (
        "Trail Boots", "Boots", "Shoes", "Kestrel", "unisex", "suede", "boots, shoes",
        "Grippy soles for muddy paths.",
        [("brown", "44", 13000, 0)], [], 70, True),
    "draft-sneakers": (
        "Draft Sneakers", "Sneakers", "Shoes", "Kestrel", "unisex", "canvas", "sneakers",
        "Not for sale yet.",
        [("red", "40", 1000, 9)], [], 2, False),
}
PUBLISHED_IN_STOCK = {h for h, spec in CATALOG.items() if spec[11] and any(v[3] > 0 for v in spec[8])}
SHOES_IN_STOCK = {"red-canvas-sneakers", "court-classic", "tempo-running-shoes"}


def fill(engine) -> None:
    with session_scope(engine) as session:
        categories, brands = {}, {}
        for handle, spec in CATALOG.items():
            (title, ptype, category, brand, gender, material, tags, description, variants, ratings, age,
             published) = spec
            if category not in categories:
                categories[category] = Category(name=category, slug=category.lower())
            if brand not in brands:
                brands[brand] = Brand(name=brand)
            product = Product(
                handle=handle, title=title, product_type=ptype, category=categories[category], brand=brands[brand],
                gender=gender, material=material, tags=tags, description=description, published=published,
                image_url=f"/images/products/{handle}.svg", created_at=NOW - timedelta(days=age),
            )
            product.variants = [
                Variant(sku=f"{handle}-{c}-{s}", color=c, size=s, price_cents=p, stock=st,
                        compare_at_price_cents=18000 if handle == "dune-leather-jacket" else None)
                for c, s, p, st in variants
            ]
            product.reviews = [Review(rating=r, author_name=f"R{n}", body="ok") for n, r in enumerate(ratings)]
            session.add(product)


@pytest.fixture(scope="module", params=BACKENDS)
def catalog(request, tmp_path_factory):
    with backend_engine(request.param, tmp_path_factory.mktemp(f"catalog-{request.param}")) as engine:
        fill(engine)
        yield engine


def search(engine, **filters):
    with session_scope(engine) as session:
        return search_products(session, SearchFilters(**{"limit": 50, **filters}))


def relaxed_search(engine, **filters):
    with session_scope(engine) as session:
        return search_with_relaxation(session, SearchFilters(**{"limit": 50, **filters}))


def handles(result) -> set:
    return {p.handle for p in result.products}


def ordered(result) -> list:
    return [p.handle for p in result.products]


def data_counts(engine) -> tuple:
    with session_scope(engine) as session:
        return tuple(session.execute(select(func.count()).select_from(model)).scalar_one()
                     for model in (Product, Variant, Review, Brand, Category))


# --------------------------------------------------------------------------------------------
# Text: whole words, plurals, ranking, typos
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["sneakers", "Sneakers", "sneaker", "SNEAKERS!"])
def test_text_finds_sneakers_by_title_or_type_singular_or_plural(catalog, text):
    result = search(catalog, text=text)
    assert {"red-canvas-sneakers", "court-classic"} <= handles(result)
    assert "draft-sneakers" not in handles(result)  # unpublished


def test_a_title_or_type_match_ranks_above_a_description_match(catalog):
    result = search(catalog, text="sneakers")
    assert result.total == 3 and ordered(result)[-1] == "canvas-tote-bag"  # only its description says sneakers
    assert ordered(search(catalog, text="leather"))[0] == "dune-leather-jacket"  # title beats material alone


def test_plurals_and_singulars_meet(catalog):
    assert handles(search(catalog, text="dresses")) == {"summer-dress"}
    assert handles(search(catalog, text="hoodies")) == {"harbor-hoodie"}
    assert handles(search(catalog, text="jacket")) == {"dune-leather-jacket"}


def test_every_word_must_match(catalog):
    assert handles(search(catalog, text="red canvas sneakers")) == {"red-canvas-sneakers"}
    assert search(catalog, text="leather sneakers").total == 1  # the court classic: leather, sneaker
    assert search(catalog, text="show me some dresses please").total == 1  # filler words are ignored


def test_men_does_not_match_women(catalog):
    found = handles(search(catalog, text="men"))
    assert found == {"court-classic", "glide-jeans", "dune-leather-jacket"}
    assert not found & {"summer-dress", "studio-wrap-top", "tempo-running-shoes"}
    assert "studio-wrap-top" in handles(search(catalog, text="women"))


@pytest.mark.parametrize("typo, expected, corrected", [
    ("snekers", {"red-canvas-sneakers", "court-classic", "canvas-tote-bag"}, {"sneker": "sneaker"}),
    ("jeens", {"glide-jeans"}, {"jeen": "jean"}),
    ("hodie", {"harbor-hoodie"}, {"hody": "hoody"}),
    ("leathr jackt", {"dune-leather-jacket"}, {"leathr": "leather", "jackt": "jacket"}),
])
def test_typos_are_corrected_to_the_catalogs_own_words(catalog, typo, expected, corrected):
    result = search(catalog, text=typo)
    assert handles(result) == expected
    assert result.corrections == corrected


def test_words_far_from_anything_are_not_corrected_into_something_else(catalog):
    for text in ("unicorn saddle", "zzzqqq", "xylophone"):
        result = search(catalog, text=text)
        assert result.total == 0 and result.products == [] and result.corrections == {}


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------

def test_category_is_a_category_name_or_a_product_type_singular_or_plural(catalog):
    assert handles(search(catalog, category="sneakers")) == {"red-canvas-sneakers", "court-classic"}
    assert handles(search(catalog, category="Sneaker")) == {"red-canvas-sneakers", "court-classic"}
    assert handles(search(catalog, category="Shoes")) == SHOES_IN_STOCK
    assert handles(search(catalog, category="shoe")) == SHOES_IN_STOCK
    assert handles(search(catalog, category="dresses")) == {"summer-dress"}
    assert handles(search(catalog, category="running shoes")) == {"tempo-running-shoes"}
    assert handles(search(catalog, category="bags")) == {"canvas-tote-bag"}  # the last word of "Tote Bag"
    assert handles(search(catalog, category="snekers")) == {"red-canvas-sneakers", "court-classic"}
    assert search(catalog, category="spaceships").total == 0


def test_colour_is_exact_and_case_insensitive_and_shows_the_matching_price(catalog):
    result = search(catalog, color=" RED ")
    assert handles(result) == {"red-canvas-sneakers", "tempo-running-shoes", "summer-dress"}
    sneakers = next(p for p in result.products if p.handle == "red-canvas-sneakers")
    assert sneakers.price_cents == 5900
    assert sneakers.colors == ("red", "white") and sneakers.sizes == ("42", "43")
    assert sneakers.rating == 4.5 and sneakers.review_count == 2
    assert handles(search(catalog, color="navy")) == {"court-classic", "summer-dress"}
    assert search(catalog, color="light blue").total == 1
    assert search(catalog, color="blue").total == 2  # tempo, jeans: not navy, not light blue


def test_colour_family_takes_every_shade(catalog):
    result = search(catalog, color="navy", color_family=True)
    assert handles(result) == {"court-classic", "summer-dress", "tempo-running-shoes", "glide-jeans",
                               "harbor-hoodie"}
    assert handles(search(catalog, colors=("black", "brown"))) == {"court-classic", "dune-leather-jacket",
                                                                    "aero-backpack"}


def test_size_is_a_variant_size_case_insensitive_and_on_the_same_variant_as_the_colour(catalog):
    assert handles(search(catalog, size="xl")) == {"dune-leather-jacket", "harbor-hoodie"}
    assert handles(search(catalog, size="42")) == {"red-canvas-sneakers", "court-classic"}
    assert handles(search(catalog, size="42", color="red")) == {"red-canvas-sneakers"}
    assert search(catalog, size="42", color="black").total == 0  # black is a 41, navy the 42
    assert search(catalog, size="43", color="red").total == 0  # sold out ...
    assert handles(search(catalog, size="43", color="red", in_stock_only=False)) == {"red-canvas-sneakers"}
    assert handles(search(catalog, size="medium")) == {"glide-jeans", "harbor-hoodie", "summer-dress"}
    assert handles(search(catalog, size="M", color="blue", color_family=True)) == {"glide-jeans", "harbor-hoodie",
                                                                                     "summer-dress"}


def test_brand_is_case_insensitive_and_typo_tolerant(catalog):
    stride = {"court-classic", "tempo-running-shoes", "aero-backpack"}
    for brand in ("Stride Lab", "stride lab", "STRIDE LAB", "Strde Lab", "stride"):
        assert handles(search(catalog, brand=brand)) == stride, brand
    assert search(catalog, brand="Nikey Nonexistent").total == 0
    assert handles(search(catalog, brand="alder and co", category="dresses")) == {"summer-dress"}


def test_material_is_a_substring_of_the_products_material(catalog):
    assert handles(search(catalog, material="cotton")) == {"harbor-hoodie"}
    assert handles(search(catalog, material="Leather")) == {"court-classic", "dune-leather-jacket"}
    assert handles(search(catalog, material="denim")) == {"glide-jeans"}


def test_gender_men_and_women_include_unisex(catalog):
    men = handles(search(catalog, gender="men"))
    assert {"court-classic", "glide-jeans", "harbor-hoodie", "red-canvas-sneakers"} <= men
    assert not men & {"summer-dress", "studio-wrap-top", "tempo-running-shoes"}
    women = handles(search(catalog, gender="women", category="shoes"))
    assert women == {"tempo-running-shoes", "red-canvas-sneakers"}
    assert handles(search(catalog, gender="Men's", category="jeans")) == {"glide-jeans"}
    assert search(catalog, gender="kids").total == 0


def test_price_range_is_on_variant_prices_even_when_variants_differ(catalog):
    assert handles(search(catalog, category="shoes", price_min_cents=8000)) == {"court-classic", "tempo-running-shoes"}
    assert handles(search(catalog, price_min_cents=5000, price_max_cents=6000)) == {"red-canvas-sneakers",
                                                                                     "harbor-hoodie"}
    # The backpack: black $45, green $65.
    assert handles(search(catalog, category="backpacks", price_max_cents=5000)) == {"aero-backpack"}
    assert search(catalog, category="backpacks", color="green", price_max_cents=5000).total == 0
    green = search(catalog, category="backpacks", color="green", price_min_cents=6000, price_max_cents=7000)
    assert ordered(green) == ["aero-backpack"] and green.products[0].price_cents == 6500
    assert search(catalog, category="backpacks", price_min_cents=5000).products[0].price_cents == 6500


def test_out_of_stock_only_with_in_stock_only_false(catalog):
    assert search(catalog, category="boots").total == 0
    assert handles(search(catalog, category="boots", in_stock_only=False)) == {"trail-boots"}
    assert search(catalog, color="white").total == 0
    assert handles(search(catalog, color="white", in_stock_only=False)) == {"red-canvas-sneakers"}
    assert search(catalog).total == len(PUBLISHED_IN_STOCK)
    assert search(catalog, in_stock_only=False).total == len(PUBLISHED_IN_STOCK) + 1


def test_unpublished_products_are_never_found(catalog):
    assert "draft-sneakers" not in handles(search(catalog, text="draft", in_stock_only=False))
    assert search(catalog, text="draft").total == 0


# --------------------------------------------------------------------------------------------
# Sorting and paging
# --------------------------------------------------------------------------------------------

def test_without_text_the_cheapest_come_first_and_pages_do_not_overlap(catalog):
    pages = [search(catalog, limit=3, offset=offset) for offset in (0, 3, 6, 9, 12)]
    assert all(page.total == len(PUBLISHED_IN_STOCK) for page in pages)
    seen = [h for page in pages for h in ordered(page)]
    assert len(seen) == len(set(seen)) == len(PUBLISHED_IN_STOCK)
    prices = [p.price_cents for page in pages for p in page.products]
    assert prices == sorted(prices)
    assert ordered(pages[0]) == ["canvas-tote-bag", "studio-wrap-top", "aero-backpack"]
    assert pages[4].products == [] and pages[4].total == len(PUBLISHED_IN_STOCK)
    assert search(catalog, offset=500).total == len(PUBLISHED_IN_STOCK)


@pytest.mark.parametrize("sort, first", [
    ("price_asc", ["red-canvas-sneakers", "court-classic", "tempo-running-shoes"]),
    ("price_desc", ["tempo-running-shoes", "court-classic", "red-canvas-sneakers"]),
    ("rating", ["tempo-running-shoes", "red-canvas-sneakers", "court-classic"]),
    ("newest", ["tempo-running-shoes", "red-canvas-sneakers", "court-classic"]),
])
def test_sort_orders(catalog, sort, first):
    assert ordered(search(catalog, category="shoes", sort=sort)) == first


def test_rating_sort_breaks_ties_by_number_of_reviews_and_puts_unrated_last(catalog):
    result = search(catalog, sort="rating")
    rated = [p for p in result.products if p.rating is not None]
    assert [p.handle for p in rated] == ["tempo-running-shoes", "red-canvas-sneakers", "dune-leather-jacket",
                                         "court-classic", "harbor-hoodie"]
    assert all(p.rating is None for p in result.products[len(rated):])


def test_relevance_with_text_and_paging_with_text(catalog):
    first = search(catalog, text="sneakers", limit=2)
    second = search(catalog, text="sneakers", limit=2, offset=2)
    assert first.total == second.total == 3
    assert ordered(second) == ["canvas-tote-bag"] and not set(ordered(first)) & set(ordered(second))


# --------------------------------------------------------------------------------------------
# Relaxation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filters, relaxed, expected", [
    (dict(category="dresses", color="blue"), ["color"], {"summer-dress"}),  # navy is a blue
    (dict(category="sneakers", size="50"), ["size"], {"red-canvas-sneakers", "court-classic"}),
    (dict(category="sneakers", brand="Northwind"), ["brand"], {"red-canvas-sneakers", "court-classic"}),
    (dict(category="jackets", material="wool"), ["material"], {"dune-leather-jacket"}),
    (dict(category="jeans", price_max_cents=4000), ["price_widened"], {"glide-jeans"}),
    (dict(category="jackets", price_max_cents=5000), ["price"], {"dune-leather-jacket"}),
    (dict(category="sneakers", brand="Northwind", size="50"), ["size", "brand"],
     {"red-canvas-sneakers", "court-classic"}),
    (dict(category="dresses", gender="men"), ["gender"], {"summer-dress"}),
    (dict(category="jeans", color="purple"), ["color"], {"glide-jeans"}),  # no purple at all: any colour
    (dict(category="jeans", color="purple", size="XS", price_max_cents=1000), ["color", "size", "price"],
     {"glide-jeans"}),
])
def test_relaxation_drops_filters_in_order_and_says_which(catalog, filters, relaxed, expected):
    assert search(catalog, **filters).total == 0
    result = relaxed_search(catalog, **filters)
    assert result.relaxed == relaxed
    assert handles(result) == expected and result.total == len(expected)


def test_relaxation_is_not_needed_or_cannot_help(catalog):
    strict = relaxed_search(catalog, category="sneakers", color="red")
    assert strict.relaxed == [] and handles(strict) == {"red-canvas-sneakers"}
    hopeless = relaxed_search(catalog, text="unicorn", color="red", size="42")
    assert hopeless.relaxed == [] and hopeless.total == 0 and hopeless.products == []


# --------------------------------------------------------------------------------------------
# Facets and the most useful question
# --------------------------------------------------------------------------------------------

def test_facets_count_matching_products_by_colour_size_and_price(catalog):
    with session_scope(catalog) as session:
        shoes = facets(session, SearchFilters(category="shoes"))
        red = facets(session, SearchFilters(color="red"))
        none = facets(session, SearchFilters(category="spaceships"))
    assert shoes.total == 3
    assert dict(shoes.colors) == {"red": 2, "black": 1, "navy": 1, "blue": 1}  # in stock only
    assert dict(shoes.sizes) == {"42": 2, "41": 1, "38": 1, "39": 1}
    assert shoes.sizes[0] == ("42", 2)
    assert all(0 < n < shoes.total for _, n in shoes.price_bands)
    assert dict(red.colors) == {"red": 3} and red.total == 3
    assert none == Facets(0, [], [], [])


def test_facet_sizes_keep_the_catalogs_spelling(catalog):
    with session_scope(catalog) as session:
        apparel = facets(session, SearchFilters(category="apparel"))
    assert {"M", "XL", "S", "L"} <= {s for s, _ in apparel.sizes}


def test_no_question_when_the_results_are_few(catalog):
    with session_scope(catalog) as session:
        counts = facets(session, SearchFilters(category="shoes"))
    assert most_useful_question(SearchFilters(category="shoes"), counts) is None


def test_the_question_that_splits_the_results_best_is_chosen():
    sizes_even = [("S", 25), ("M", 25), ("L", 25), ("XL", 25)]
    one_colour = [("black", 100)]
    bands = [(5000, 90)]
    counts = Facets(100, one_colour, sizes_even, bands)
    assert most_useful_question(SearchFilters(category="t-shirts"), counts) == "size"
    assert most_useful_question(SearchFilters(category="t-shirts", size="M"), counts) is None
    colours_even = [("red", 50), ("blue", 50)]
    sizes_all = [("42", 100), ("43", 100)]
    assert most_useful_question(SearchFilters(), Facets(100, colours_even, sizes_all, bands)) == "color"
    spread_bands = [(3000, 25), (5000, 50), (8000, 75)]
    assert most_useful_question(SearchFilters(), Facets(100, one_colour, sizes_all, spread_bands)) == "budget"
    assert most_useful_question(SearchFilters(price_max_cents=9000),
                                Facets(100, one_colour, sizes_all, spread_bands)) is None
    assert most_useful_question(SearchFilters(), Facets(8, colours_even, sizes_even, spread_bands)) is None


def test_facets_and_question_on_the_demo_store(demo_store):
    engine, _ = demo_store
    with session_scope(engine) as session:
        filters = SearchFilters(category="sneakers")
        counts = facets(session, filters)
        total = search_products(session, filters).total
        question = most_useful_question(filters, counts)
        narrowed = facets(session, SearchFilters(category="sneakers", color=counts.colors[0][0]))
    assert counts.total == total > 8
    assert counts.colors[0][1] >= counts.colors[-1][1]
    assert question in ("size", "color", "budget")
    assert narrowed.total == counts.colors[0][1]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

NASTY = [
    "'; DROP TABLE products; --",
    '" OR 1=1 --',
    "red%' OR '1'='1",
    "100%_off",
    'sneakers" OR "x',
    "title:sneakers",
    "* NEAR(a b) NOT AND OR",
    "{title ptype}: sneaker",
    "(((",
    "sneak*",
    "^sneakers",
    "a AND AND b",
    "-sneakers",
    "\x00\x01 sneakers",
    "😀 🚀",
]


@pytest.mark.parametrize("nasty", NASTY)
def test_sql_and_fts_syntax_in_any_field_is_just_text(catalog, nasty):
    before = data_counts(catalog)
    for field in ("text", "category", "brand", "color", "size", "material", "gender"):
        result = search(catalog, **{field: nasty})
        assert result.total >= 0
        relaxed_search(catalog, **{field: nasty})
        with session_scope(catalog) as session:
            facets(session, SearchFilters(**{field: nasty}))
    assert data_counts(catalog) == before
    assert search(catalog, text="sneakers").total == 3


def test_absurd_filters_are_cleaned_not_raised_on(catalog):
    assert search(catalog, size="500").total == 0
    negative = search(catalog, category="shoes", price_min_cents=-500, price_max_cents=-1)
    assert handles(negative) == SHOES_IN_STOCK  # negative prices are no prices
    swapped = search(catalog, price_min_cents=6000, price_max_cents=5000)
    assert handles(swapped) == handles(search(catalog, price_min_cents=5000, price_max_cents=6000))
    assert search(catalog, limit=-3).products == [] and search(catalog, limit=10_000).total == len(PUBLISHED_IN_STOCK)
    weird = clean_filters(SearchFilters(limit="abc", offset=-5, sort="drop table", price_max_cents="80",
                                        colors="red", price_min_cents=float("nan")))
    assert (weird.limit, weird.offset, weird.sort, weird.price_max_cents, weird.colors, weird.price_min_cents) == (
        5, 0, "relevance", 80, ("red",), None)
    assert search(catalog, offset=10**12).products == []


def test_ten_kilobytes_of_text_answer_quickly(catalog):
    started = time.monotonic()
    assert handles(search(catalog, text="sneakers " * 1200)) == {"red-canvas-sneakers", "court-classic",
                                                                 "canvas-tote-bag"}
    assert search(catalog, text="x" * 10_240).total == 0
    assert search(catalog, category="sneakers " * 1200, brand="b" * 10_000).total == 0
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------
# Product pages, summaries, home page
# --------------------------------------------------------------------------------------------

def test_get_product_loads_variants_brand_category_and_reviews(catalog):
    with session_scope(catalog) as session:
        product = get_product(session, "red-canvas-sneakers")
        assert product.title == "Red Canvas Sneakers"
        assert product.brand.name == "Kestrel" and product.category.name == "Shoes"
        assert [(v.color, v.size, v.price_cents) for v in product.variants] == [
            ("red", "42", 5900), ("red", "43", 5900), ("white", "42", 6400)]
        assert sorted(r.rating for r in product.reviews) == [4, 5]


@pytest.mark.parametrize("handle", ["no-such-product", "", "x" * 10_000, "red-canvas-sneakers' OR '1'='1"])
def test_get_product_returns_none_for_unknown_handles(catalog, handle):
    with session_scope(catalog) as session:
        assert get_product(session, handle) is None


def test_summaries_for_handles_keep_the_order_given(catalog):
    with session_scope(catalog) as session:
        found = summaries_for_handles(session, ["summer-dress", "nope", "glide-jeans"])
    assert [s.handle for s in found] == ["summer-dress", "glide-jeans"]
    assert found[1].url_path == "/products/glide-jeans" and found[1].in_stock


def test_featured_products_are_the_most_reviewed(catalog):
    with session_scope(catalog) as session:
        featured = featured_products(session, limit=3)
    assert [p.handle for p in featured] == ["tempo-running-shoes", "red-canvas-sneakers", "court-classic"]


def test_category_names_are_sorted(catalog):
    with session_scope(catalog) as session:
        assert category_names(session) == ["Accessories", "Apparel", "Shoes"]


@pytest.mark.parametrize("cents, text", [(0, "$0.00"), (5999, "$59.99"), (123456, "$1,234.56")])
def test_format_price(cents, text):
    assert format_price(cents) == text
