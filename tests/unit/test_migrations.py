"""Schema migrations (shop/migrations) on real SQLite files and fresh PostgreSQL schemas/databases."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from shop.cli import main
from shop.db import create_schema, make_engine, session_scope, shop_metadata
from shop.migrations import current_revision, head_revision, upgrade
from shop.models import Category, Order, Product
from shop.seed import SeedConfig, seed_store
from tests.unit.conftest import POSTGRES_URL, TODAY

BASELINE, CONVERSATION_INDEX, BEFORE_SALES = "0001", "ix_orders_conversation_id", "0002"


@pytest.fixture
def empty_engine(database_url):
    """An engine on a database with no table at all (the `database_url` fixture makes it per backend)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def schema_differences(engine) -> list:
    """What Alembic's autogenerate would still change to make the database match the models."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), shop_metadata())


def order_indexes(engine) -> set:
    return {index["name"] for index in inspect(engine).get_indexes("orders")}


def test_upgrade_from_an_empty_database_builds_exactly_the_models_schema(empty_engine):
    assert current_revision(empty_engine) is None

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision() == "0003"
    assert set(inspect(empty_engine).get_table_names()) == set(shop_metadata().tables) | {"alembic_version"}
    assert schema_differences(empty_engine) == []
    report = seed_store(empty_engine, SeedConfig(seed=3, products=20, reviews=10, customers=5, orders=12,
                                                 today=TODAY), progress=False)
    assert report.products == 20 and report.orders == 12


def test_upgrade_from_the_baseline_adds_the_index_and_keeps_the_data(empty_engine):
    upgrade(empty_engine, BASELINE)
    assert current_revision(empty_engine) == BASELINE
    assert CONVERSATION_INDEX not in order_indexes(empty_engine)
    assert ("add_index", CONVERSATION_INDEX) in [(str(d[0]), getattr(d[1], "name", None))
                                                  for d in schema_differences(empty_engine)
                                                  if not isinstance(d, list)]
    placed = datetime(2024, 6, 1, 12, 0)
    with session_scope(empty_engine) as session:
        session.add(Order(number="SH-000777", email="ana@example.com", status="paid", conversation_id="chat-7",
                          placed_at=placed, updated_at=placed))

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision()
    assert CONVERSATION_INDEX in order_indexes(empty_engine)
    assert schema_differences(empty_engine) == []
    with session_scope(empty_engine) as session:
        found = session.execute(select(Order.number, Order.email).where(Order.conversation_id == "chat-7")).all()
    assert found == [("SH-000777", "ana@example.com")]


def test_upgrade_to_sales_and_retention_keeps_an_existing_lead_and_adds_the_new_tables(empty_engine):
    upgrade(empty_engine, BEFORE_SALES)
    with empty_engine.begin() as connection:
        connection.execute(text("INSERT INTO leads (conversation_id, name, email, company, role, timeline, need, "
                                "score, stage, consent, created_at) VALUES ('chat-9', 'Ana', 'ana@example.com', "
                                "'Acme', 'buyer', '', '', 10, 'cold', :consent, '2024-06-01 12:00:00')"), {"consent": True})
    assert "cart_reminders" not in inspect(empty_engine).get_table_names()

    upgrade(empty_engine)

    assert {"cart_reminders", "stock_alerts", "broadcasts", "broadcast_deliveries"} <= set(
        inspect(empty_engine).get_table_names())
    assert schema_differences(empty_engine) == []
    with empty_engine.connect() as connection:
        lead = connection.execute(text("SELECT email, crm_status, crm_attempts FROM leads "
                                       "WHERE conversation_id = 'chat-9'")).one()
    assert tuple(lead) == ("ana@example.com", "pending", 0)


def test_a_database_made_by_create_schema_before_migrations_is_adopted(empty_engine):
    create_schema(empty_engine)
    with session_scope(empty_engine) as session:
        session.add(Product(handle="trail-runner", title="Trail Runner", category=Category(name="Shoes", slug="shoes")))
    assert current_revision(empty_engine) is None

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision()
    assert schema_differences(empty_engine) == []
    with session_scope(empty_engine) as session:
        assert session.execute(select(Product.title)).scalars().all() == ["Trail Runner"]


def test_upgrading_twice_changes_nothing(empty_engine):
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        session.add(Category(name="Bags", slug="bags"))
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    with session_scope(empty_engine) as session:
        assert session.execute(select(Category.slug)).scalars().all() == ["bags"]


def run_shop(capsys, *args: str, url: str):
    """`python -m shop ARGS` in this process (test_cli.py runs the CLI as a real process)."""
    status = main([*args, "--database-url", url])
    return status, capsys.readouterr()


def test_migrate_command_creates_a_missing_postgresql_database_and_upgrades_it(capsys):
    name = f"shop_migrate_{uuid.uuid4().hex[:10]}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), future=True, isolation_level="AUTOCOMMIT")
    try:
        status, first = run_shop(capsys, "migrate", "--revision", BASELINE, url=url)
        assert status == 0, first.err
        assert "Created the database." in first.out
        assert f"at revision {BASELINE}." in first.out

        status, second = run_shop(capsys, "migrate", url=url)
        assert status == 0, second.err
        assert f"migrated from revision {BASELINE} to 0003" in second.out
        assert "at revision 0003 (the newest)" in second.out
        engine = make_engine(url)
        try:
            assert CONVERSATION_INDEX in order_indexes(engine)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migrate_command_refuses_an_unknown_revision_and_changes_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    assert run_shop(capsys, "migrate", "--revision", BASELINE, url=url)[0] == 0

    status, refused = run_shop(capsys, "migrate", "--revision", "9999", url=url)

    assert status == 1
    assert refused.err.startswith("migrate: ") and "9999" in refused.err
    engine = make_engine(url)
    try:
        assert current_revision(engine) == BASELINE
    finally:
        engine.dispose()
