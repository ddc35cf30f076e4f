"""`python -m shop ...` end to end, as a user runs it: a real process on a real database."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from shop.db import make_engine, session_scope
from shop.models import ORDER_STATUSES, Product, Variant
from tests.unit.conftest import REPO_ROOT

SMALL_SEED = ["seed", "--products", "60", "--reviews", "120", "--customers", "15", "--orders", "40",
              "--today", "2024-06-15", "--quiet"]


def shop(*args: str, url: str = None, env_url: str = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SHOP_DATABASE_URL", None)
    if env_url or url:
        env["SHOP_DATABASE_URL"] = env_url or url
    return subprocess.run(
        [sys.executable, "-m", "shop", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def stat(output: str, name: str) -> int:
    match = re.search(rf"^\s+{name}\s+([\d,]+)$", output, re.MULTILINE)
    assert match, f"{name!r} not in:\n{output}"
    return int(match.group(1).replace(",", ""))


def test_help_lists_every_command():
    result = shop("--help")
    assert result.returncode == 0
    for command in ("init-db", "seed", "import-shopify", "stats", "SHOP_DATABASE_URL", "--database-url"):
        assert command in result.stdout


@pytest.mark.parametrize("command, expected", [
    ("seed", ["--seed", "--size", "--products", "--if-empty", "--reset", "100,000 products"]),
    ("import-shopify", ["path", "Handle", "line number", "exit status"]),
    ("stats", ["orders (by status)"]),
    ("init-db", ["Existing data is kept"]),
])
def test_every_command_has_useful_help(command, expected):
    result = shop(command, "--help")
    assert result.returncode == 0
    for text in expected:
        assert text in result.stdout, text


def test_no_command_or_a_bad_option_is_a_usage_error(tmp_path):
    assert shop().returncode == 2
    bad = shop("seed", "--products", "many", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert bad.returncode == 2 and "not a whole number" in bad.stderr


def test_seed_stats_if_empty_and_reset(database_url):
    first = shop(*SMALL_SEED, url=database_url)
    assert first.returncode == 0, first.stderr
    assert "60 products" in first.stdout

    stats = shop("stats", url=database_url)
    assert stats.returncode == 0, stats.stderr
    assert stat(stats.stdout, "products") == 60
    assert stat(stats.stdout, "customers") == 15
    assert stat(stats.stdout, "orders") == 40
    assert stat(stats.stdout, "reviews") == 120
    assert stat(stats.stdout, "variants") > 60
    assert sum(stat(stats.stdout, status) for status in ORDER_STATUSES) == 40
    assert all(stat(stats.stdout, status) > 0 for status in ORDER_STATUSES)

    again = shop(*SMALL_SEED, "--if-empty", url=database_url)
    assert again.returncode == 0 and "Not seeding" in again.stdout
    refused = shop(*SMALL_SEED, url=database_url)
    assert refused.returncode == 1 and "--reset" in refused.stderr
    assert shop("stats", url=database_url).stdout == stats.stdout

    reset = shop("seed", "--reset", "--products", "30", "--reviews", "10", "--customers", "5", "--orders", "12",
                 "--quiet", url=database_url)
    assert reset.returncode == 0, reset.stderr
    assert stat(shop("stats", url=database_url).stdout, "products") == 30


def product_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            return len(session.execute(select(Product.id)).all())
    finally:
        engine.dispose()


def test_the_same_seed_writes_the_same_catalog_and_shows_progress(tmp_path):
    catalogs = []
    for name, quiet in (("a.db", True), ("b.db", False)):
        url = f"sqlite:///{tmp_path / name}"
        result = shop(*[a for a in SMALL_SEED if quiet or a != "--quiet"], "--seed", "5", url=url)
        assert result.returncode == 0
        assert ("rows" in result.stderr) is not quiet  # the tqdm bar
        engine = make_engine(url)
        with session_scope(engine) as session:
            catalogs.append(session.execute(
                select(Product.title, Variant.sku, Variant.price_cents).join(Variant).order_by(Variant.sku)
            ).all())
        engine.dispose()
    assert catalogs[0] == catalogs[1] and len(catalogs[0]) > 60


def test_database_url_option_overrides_the_environment(tmp_path):
    env_db, flag_db = tmp_path / "env.db", tmp_path / "flag.db"
    result = shop(*SMALL_SEED, "--database-url", f"sqlite:///{flag_db}", env_url=f"sqlite:///{env_db}")
    assert result.returncode == 0, result.stderr
    assert stat(shop("stats", env_url=f"sqlite:///{flag_db}").stdout, "products") == 60
    assert "no shop tables" in shop("stats", env_url=f"sqlite:///{env_db}").stdout


def test_init_db_creates_an_empty_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'init.db'}"
    result = shop("init-db", url=url)
    assert result.returncode == 0 and "Schema ready" in result.stdout
    assert stat(shop("stats", url=url).stdout, "products") == 0


def test_import_shopify_twice(database_url, shopify_sample):
    first = shop("import-shopify", str(shopify_sample), url=database_url)
    assert first.returncode == 0, first.stderr
    assert "products: 20 created, 0 updated" in first.stdout
    assert "variants: 22 created, 0 updated" in first.stdout
    second = shop("import-shopify", str(shopify_sample), url=database_url)
    assert "products: 0 created, 20 updated" in second.stdout
    assert stat(shop("stats", url=database_url).stdout, "products") == 20


def test_import_shopify_reports_broken_rows_and_keeps_going(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(
        "Handle,Title,Body (HTML),Option1 Name,Option1 Value,Variant Price\n"
        'tee,Tee,"<p>Soft\ncotton</p>",Size,S,10\n'
        "tee,,,,M,ten\n"
        "cap,Cap,,,,15\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    result = shop("import-shopify", str(path), url=url)
    assert result.returncode == 0, result.stderr
    assert "line 4 (tee): Variant Price 'ten' is not a number" in result.stdout
    assert "products: 1 created" in result.stdout
    assert product_count(url) == 1


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("Handle,Title\nshirt,Shirt\n", "missing required column(s) Variant Price"),
])
def test_import_shopify_refuses_unreadable_files(tmp_path, content, message):
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    result = shop("import-shopify", str(path), url=url)
    assert result.returncode == 1
    assert message in result.stderr and "Nothing was imported" in result.stderr
    assert product_count(url) == 0


def test_a_database_that_cannot_be_reached_is_one_clear_line(tmp_path):
    result = shop("stats", url="postgresql+psycopg2://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert "database error" in result.stderr and "Traceback" not in result.stderr
