"""NLU lookup tables generated from the catalog: Rasa reads them, and they hold the catalog's names."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from sqlalchemy import select

from shop.db import make_engine, session_scope
from shop.lookups import COMMAND, lookup_values, render_lookup, write_lookup_tables
from shop.models import Brand, Product, Variant
from shop.search_text import number_forms
from shop.seed import SeedConfig, seed_store
from tests.unit.conftest import REPO_ROOT, TODAY


@pytest.fixture
def seeded(engine):
    seed_store(engine, SeedConfig(seed=11, products=150, reviews=30, customers=5, orders=5, today=TODAY),
               progress=False)
    return engine


def load_rasa_lookups(directory):
    from rasa.shared.nlu.training_data.loading import load_data

    training_data = load_data(str(directory))
    return {table["name"]: table["elements"] for table in training_data.lookup_tables}


def test_generated_files_parse_with_rasa_and_hold_the_catalogs_names(seeded, tmp_path):
    tmp_path = tmp_path / "lookups"
    with session_scope(seeded) as session:
        counts = write_lookup_tables(session, tmp_path)
        brands = set(session.execute(
            select(Brand.name).join(Product, Product.brand_id == Brand.id).where(Product.published.is_(True))
        ).scalars())
        colors = {c.lower() for c in session.execute(select(Variant.color).distinct()).scalars()}
        types = set(session.execute(select(Product.product_type).distinct()).scalars())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brand.yml", "category.yml", "color.yml"]
    tables = load_rasa_lookups(tmp_path)
    assert set(tables) == {"brand", "category", "color"}
    assert {name: len(values) for name, values in tables.items()} == counts
    assert brands and brands <= set(tables["brand"])
    assert {b.lower() for b in brands} <= set(tables["brand"])  # users type in lower case
    assert set(tables["color"]) == colors
    category = set(tables["category"])
    assert {t.lower() for t in types} <= category
    if "Sneakers" in types:
        assert {"sneakers", "sneaker"} <= category
    for text in tmp_path.iterdir():
        content = text.read_text()
        assert content.startswith(f"# Generated from the shop catalog by `{COMMAND}`")
        assert 'version: "3.1"' in content


def test_output_is_sorted_and_deterministic(seeded, tmp_path):
    with session_scope(seeded) as session:
        write_lookup_tables(session, tmp_path / "a")
        write_lookup_tables(session, tmp_path / "b")
        values = lookup_values(session)
    for name in ("brand.yml", "category.yml", "color.yml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for entries in values.values():
        assert entries == sorted(entries, key=lambda v: (v.casefold(), v)) and len(entries) == len(set(entries))


@pytest.mark.parametrize("name, forms", [
    ("Sneakers", ["sneaker", "sneakers"]),
    ("Running Shoes", ["running shoe", "running shoes"]),
    ("Dress", ["dress", "dresses"]),
    ("T-Shirt", ["t-shirt", "t-shirts"]),
    ("Jeans", ["jeans"]),
    ("Apparel", ["apparel"]),
    ("Accessories", ["accessories", "accessory"]),
    ("Watch", ["watch", "watches"]),
    ("Scarf", ["scarf", "scarves"]),
    ("Sunglasses", ["sunglasses"]),
])
def test_singular_and_plural_forms(name, forms):
    assert number_forms(name) == forms


def test_odd_names_cannot_break_the_yaml(engine, tmp_path):
    tmp_path = tmp_path / "lookups"
    with session_scope(engine) as session:
        brand = Brand(name="- #1 | Brand: \"Quotes\"\nnewline")
        session.add(Product(handle="odd", title="Odd", product_type="  Odd   Thing  ", brand=brand,
                            variants=[Variant(color=" Off White ", size="M", price_cents=100, stock=1)]))
    with session_scope(engine) as session:
        write_lookup_tables(session, tmp_path)
    tables = load_rasa_lookups(tmp_path)
    assert tables["brand"] == ['1 | Brand: "Quotes" newline', '1 | brand: "quotes" newline']
    assert tables["color"] == ["off white"]
    assert tables["category"] == ["odd thing", "odd things"]


def test_an_empty_catalog_gives_empty_tables_that_rasa_still_reads(engine, tmp_path):
    tmp_path = tmp_path / "lookups"
    with session_scope(engine) as session:
        counts = write_lookup_tables(session, tmp_path)
    assert counts == {"category": 0, "brand": 0, "color": 0}
    assert "nlu: []" in render_lookup("brand", [])
    load_rasa_lookups(tmp_path)  # rasa imported before warnings become errors: its imports warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # how Rasa reports a problem with training data
        assert load_rasa_lookups(tmp_path) == {}


def test_the_cli_writes_the_tables(database_url, tmp_path):
    engine = make_engine(database_url)
    try:
        seed_store(engine, SeedConfig(seed=2, products=40, reviews=5, customers=3, orders=3, today=TODAY),
                   progress=False)
    finally:
        engine.dispose()
    out = tmp_path / "lookups"
    done = subprocess.run(
        [sys.executable, "-m", "shop", "lookups", "--out", str(out), "--database-url", database_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "category.yml" in done.stdout
    assert set(load_rasa_lookups(out)) == {"brand", "category", "color"}
