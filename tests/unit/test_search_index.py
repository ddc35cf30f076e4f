"""The catalog search index stays in sync with the catalog, however the catalog changes.

Every test gets its own empty database (SQLite and PostgreSQL) and changes it: products added,
edited, sold out, deleted and reviewed through the ORM or raw SQL, a Shopify import, a seed and
a reset of the whole store. Plus the benchmark and the CLI commands around the index.
"""
from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from shop import search_index
from shop.bench_search import BenchError, naive_search, query_mix, run_benchmark
from shop.catalog import SearchFilters, _fts_match, _plan, _prepare, clean_filters, search_products
from shop.db import session_scope
from shop.models import Brand, Category, Product, Review, Variant
from shop.seed import SeedConfig, reset_store, seed_store
from shop.shopify_import import import_shopify_csv
from tests.unit.conftest import REPO_ROOT, TODAY


def add(session, handle, title, ptype="Sneakers", category="Shoes", brand="Kestrel", variants=(("red", "42", 5000, 3),),
        **fields):
    found_category = session.execute(select(Category).filter_by(name=category)).scalar_one_or_none()
    found_brand = session.execute(select(Brand).filter_by(name=brand)).scalar_one_or_none()
    product = Product(
        handle=handle, title=title, product_type=ptype,
        category=found_category or Category(name=category, slug=category.lower()),
        brand=found_brand or Brand(name=brand), **fields,
    )
    product.variants = [Variant(color=c, size=s, price_cents=p, stock=st) for c, s, p, st in variants]
    session.add(product)
    session.flush()
    return product


def found(engine, **filters):
    with session_scope(engine) as session:
        return [p.handle for p in search_products(session, SearchFilters(**{"limit": 50, **filters})).products]


def dirty_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM search_dirty")).scalar_one()


@pytest.fixture
def shop(engine):
    with session_scope(engine) as session:
        add(session, "blaze-runner", "Blaze Runner")
        add(session, "court-classic", "Court Classic", variants=(("white", "41", 7000, 2),))
    return engine


def test_the_first_search_builds_the_index_and_installs_its_triggers(shop):
    with shop.connect() as conn:
        assert not search_index._inspect(conn)[1]  # no index tables before any search
    assert found(shop, category="sneakers") == ["blaze-runner", "court-classic"]
    with shop.connect() as conn:
        has_products, has_tables, triggers = search_index._inspect(conn)
    assert has_products and has_tables and triggers == search_index.TRIGGER_COUNT
    assert dirty_count(shop) == 0


def test_products_added_changed_sold_out_and_deleted_are_seen_by_the_next_search(shop):
    assert found(shop, text="blaze") == ["blaze-runner"]
    with session_scope(shop) as session:
        add(session, "nova-boot", "Nova Boot", ptype="Boots", variants=(("brown", "44", 12000, 1),))
    assert dirty_count(shop) == 1  # marked by a trigger, rebuilt by the next search
    assert found(shop, text="nova") == ["nova-boot"]
    assert dirty_count(shop) == 0

    with session_scope(shop) as session:
        product = session.execute(select(Product).filter_by(handle="blaze-runner")).scalar_one()
        product.title = "Comet Runner"
    assert found(shop, text="blaze") == [] and found(shop, text="comet") == ["blaze-runner"]

    with session_scope(shop) as session:
        session.execute(Variant.__table__.update().values(stock=0))  # raw SQL, not the ORM
    assert found(shop) == [] and found(shop, in_stock_only=False) == ["blaze-runner", "court-classic", "nova-boot"]
    with session_scope(shop) as session:
        session.execute(Variant.__table__.update().where(Variant.color == "white").values(stock=5, price_cents=3000))
    assert found(shop) == ["court-classic"] and found(shop, price_max_cents=3000) == ["court-classic"]

    with session_scope(shop) as session:
        session.delete(session.execute(select(Product).filter_by(handle="nova-boot")).scalar_one())
        session.execute(select(Product).filter_by(handle="court-classic")).scalar_one().published = False
    assert found(shop, in_stock_only=False) == ["blaze-runner"]


def test_variants_colours_reviews_and_brand_names_are_followed(shop):
    with session_scope(shop) as session:
        product = session.execute(select(Product).filter_by(handle="court-classic")).scalar_one()
        product.variants.append(Variant(color="Navy", size="XL", price_cents=7000, stock=4))
        session.add(Review(product=product, rating=5, author_name="A"))
    assert found(shop, color="navy", size="xl") == ["court-classic"]
    assert found(shop, sort="rating")[0] == "court-classic"
    with session_scope(shop) as session:
        session.execute(Brand.__table__.update().values(name="Stride Lab"))
    assert found(shop, brand="stride lab") == ["blaze-runner", "court-classic"]
    assert found(shop, brand="kestrel") == []


def test_a_search_sees_the_uncommitted_changes_of_its_own_session(shop):
    with session_scope(shop) as session:
        add(session, "secret-sneaker", "Secret Sneaker")
        pending = Product(handle="pending-boot", title="Pending Boot", product_type="Boots")
        pending.variants = [Variant(color="black", size="40", price_cents=9000, stock=1)]
        session.add(pending)  # not flushed: the search flushes first
        result = search_products(session, SearchFilters(text="secret pending", limit=5))
        assert result.total == 0
        assert [p.handle for p in search_products(session, SearchFilters(text="pending")).products] == ["pending-boot"]
        session.rollback()
    assert found(shop, text="secret") == [] and found(shop, text="pending") == []


def test_a_product_imported_from_shopify_is_findable(engine, tmp_path, shopify_sample):
    found(engine)  # the index exists before the import: the triggers follow it
    report = import_shopify_csv(engine, shopify_sample)
    assert report.products_created > 0
    assert "ocean-blue-shirt" in found(engine, text="ocean blue shirt")
    path = tmp_path / "more.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Handle", "Title", "Vendor", "Type", "Option1 Name", "Option1 Value", "Variant Price",
                         "Variant Inventory Qty", "Published"])
        writer.writerow(["glacier-parka", "Glacier Parka", "Polar Works", "Parkas", "Color", "Teal", "199.00", "3",
                         "true"])
    import_shopify_csv(engine, path)
    assert found(engine, category="parka") == ["glacier-parka"]
    assert found(engine, brand="polar works", color="teal") == ["glacier-parka"]
    assert found(engine, text="glaicer parka") == ["glacier-parka"]


def test_an_import_before_any_search_is_indexed_by_the_first_search(engine, shopify_sample):
    import_shopify_csv(engine, shopify_sample)
    assert "ocean-blue-shirt" in found(engine, text="shirt")


def test_a_reset_and_reseed_rebuilds_the_index_from_scratch(engine):
    seed_store(engine, SeedConfig(seed=3, products=40, reviews=20, customers=5, orders=5, today=TODAY), progress=False)
    first = found(engine, category="sneakers", in_stock_only=False)
    assert first
    reset_store(engine)  # drops the shop tables (and with them the triggers); the index tables stay
    seed_store(engine, SeedConfig(seed=4, products=40, reviews=20, customers=5, orders=5, today=TODAY), progress=False)
    with session_scope(engine) as session:
        expected = set(session.execute(
            select(Product.handle).where(Product.product_type == "Sneakers", Product.published.is_(True),
                                         Product.variants.any())
        ).scalars())
    assert set(found(engine, category="sneakers", in_stock_only=False)) == expected


def test_ensure_and_rebuild(engine):
    with session_scope(engine) as session:
        add(session, "blaze-runner", "Blaze Runner")
    assert search_index.ensure_search_index(engine) == 1  # built
    assert search_index.ensure_search_index(engine) == 0  # nothing to do
    with session_scope(engine) as session:
        add(session, "comet", "Comet")
    assert search_index.ensure_search_index(engine) == 1  # one dirty product refreshed
    assert search_index.rebuild_search_index(engine) == 2
    assert found(engine, text="comet") == ["comet"]


def test_bad_input_never_reaches_the_fts_query_and_changes_nothing(shop):
    tables = ("products", "variants", "brands", "categories", "search_docs", "search_dirty")
    found(shop)

    def counts():
        with shop.connect() as conn:
            return [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]

    before = counts()
    nasty = ['" OR 1=1 --', "'; DROP TABLE products; --", "NEAR(x y) * ^ {title}: a", "x" * 10_000]
    for value in nasty:
        filters = clean_filters(SearchFilters(text=value, category=value, brand=value, color=value, size=value))
        with session_scope(shop) as session:
            plan = _plan(session, filters, _prepare(session))
            match = _fts_match(plan)
            search_products(session, filters)
        # Only quoted [0-9a-z] words, operators and column names of our own reach FTS5.
        assert match is None or all(
            part.strip('"').isalnum() or part in ("AND", "OR", "NOT", ":", "facets")
            or part.strip("{}()") in search_index.TEXT_COLUMNS + ("", "facets")
            for part in match.replace("(", " ").replace(")", " ").split()
        ), match
    assert counts() == before


def test_the_vocabulary_is_cached_per_index_state(shop):
    with session_scope(shop) as session:
        state = _prepare(session)
        assert search_index.vocabulary(session, state) is search_index.vocabulary(session, state)
        vocab = search_index.vocabulary(session, state)
    assert {"blaze", "runner", "court", "classic", "sneaker"} <= set(vocab.words)
    assert "sneaker" in vocab.types and "red" in vocab.colors and "42" in vocab.sizes


# --------------------------------------------------------------------------------------------
# Benchmark and CLI
# --------------------------------------------------------------------------------------------

def test_the_benchmark_runs_a_seeded_mix_and_refuses_small_catalogs(engine):
    seed_store(engine, SeedConfig(seed=5, products=120, reviews=50, customers=5, orders=5, today=TODAY),
               progress=False)
    with pytest.raises(BenchError, match="seed --reset --size large"):
        run_benchmark(engine, queries=3, min_products=100_000, progress=False)
    with session_scope(engine) as session:
        mix = query_mix(session, 12, seed=1)
        assert mix == query_mix(session, 12, seed=1)  # the same seed, the same searches
        for _, filters in mix:
            naive_search(session, filters)
    report = run_benchmark(engine, queries=8, seed=1, min_products=0, progress=False)
    assert report.queries == 8 and len(report.overall.engine) == len(report.overall.naive) == 8
    lines = "\n".join(report.lines())
    assert "p50 ms" in lines and "speed-up" in lines


def run_cli(*args, database_url):
    return subprocess.run(
        [sys.executable, "-m", "shop", *args, "--database-url", database_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


def test_cli_search_index_and_bench_search(database_url):
    seeded = run_cli("seed", "--products", "30", "--reviews", "10", "--customers", "3", "--orders", "3", "--quiet",
                     database_url=database_url)
    assert seeded.returncode == 0, seeded.stderr
    assert "Search index up to date" in seeded.stdout
    rebuilt = run_cli("search-index", "--rebuild", "--quiet", database_url=database_url)
    assert rebuilt.returncode == 0 and "rebuilt" in rebuilt.stdout, rebuilt.stderr
    small = run_cli("bench-search", "--queries", "2", "--quiet", database_url=database_url)
    assert small.returncode == 1 and "seed --reset --size large" in small.stderr
    bench = run_cli("bench-search", "--queries", "4", "--min-products", "0", "--quiet", database_url=database_url)
    assert bench.returncode == 0, bench.stderr
    assert "engine (search_products)" in bench.stdout and "naive LIKE scan" in bench.stdout
