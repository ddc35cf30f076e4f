"""Fixtures for the shop backend's tests: a real database per test, on SQLite and on PostgreSQL.

Every test that takes `engine` runs twice: on a fresh SQLite file in tmp_path (a copy of an empty
schema built once) and in an empty PostgreSQL schema of its own (reused by later tests once emptied,
all dropped at the end). PostgreSQL comes from
SHOP_TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432, database `test`).
Deselect the PostgreSQL half with `-k "not postgresql"` when no server is around.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Tuple

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from shop.db import create_schema, make_engine, shop_metadata  # noqa: E402
from shop.seed import SeedConfig, seed_store  # noqa: E402

POSTGRES_URL = os.environ.get("SHOP_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]
# Seeded stores use a fixed reference day so that every run sees the very same rows.
TODAY = date(2024, 6, 15)
# A real Shopify export (read-only): shared/ lives beside the repository (and in CI beside the clone).
SHOPIFY_SAMPLE_CANDIDATES = [
    Path(p) for p in (
        os.environ.get("SHOP_TEST_SHOPIFY_SAMPLE", ""),
        REPO_ROOT.parent / "shared" / "data" / "shopify-apparel.csv",
        "/work/shared/data/shopify-apparel.csv",
    ) if str(p)
]


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_URL, future=True, isolation_level="AUTOCOMMIT")


def postgres_url_for_schema(schema: str) -> str:
    """The test server's URL with a search_path, for code (or subprocesses) that only take a URL."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def _create_postgres_schema(schema: str) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - report the real reason
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Start it, set SHOP_TEST_POSTGRES_URL, or deselect with -k 'not postgresql'.",
            pytrace=False,
        )
    finally:
        admin.dispose()


def _drop_postgres_schema(schema: str) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema on the test server; dropped with everything in it afterwards."""
    schema = f"shoptest_{uuid.uuid4().hex[:12]}"
    _create_postgres_schema(schema)
    try:
        yield schema
    finally:
        _drop_postgres_schema(schema)


@lru_cache(maxsize=1)
def _sqlite_template() -> Path:
    """The empty shop schema in a SQLite file, built once per run: each test gets a copy, which takes
    milliseconds where creating the 40-odd tables takes a quarter of a second."""
    path = Path(tempfile.mkdtemp(prefix="shop-schema-")) / "shop.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()  # the last connection to close folds the WAL into the file that is copied
    return path


class _PostgresSchemas:
    """Schemas holding the empty shop schema, handed to one test at a time and emptied (TRUNCATE) when
    it is done: far cheaper than creating and dropping the tables for each of the hundreds of tests."""

    def __init__(self) -> None:
        self.free: list = []
        self.created: list = []

    def acquire(self) -> str:
        if self.free:
            return self.free.pop()
        schema = f"shoptest_{uuid.uuid4().hex[:12]}"
        _create_postgres_schema(schema)
        engine = create_engine(POSTGRES_URL, future=True, connect_args={"options": f"-csearch_path={schema}"})
        try:
            create_schema(engine)
        finally:
            engine.dispose()
        self.created.append(schema)
        return schema

    def release(self, schema: str) -> None:
        """Empties the schema for the next test; drops it instead when a test left it locked or changed."""
        shop_tables = set(shop_metadata().tables)
        engine = create_engine(POSTGRES_URL, future=True)
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                present = set(conn.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = :schema"), {"schema": schema}).scalars())
                if present != shop_tables:  # a test added tables (analytics) or dropped some: start afresh
                    raise RuntimeError("schema changed")
                # DELETE with foreign-key triggers off, then rewinding the id sequences, is several times
                # faster than TRUNCATE on tables this small (TRUNCATE makes new files for each one).
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                for name in present:
                    conn.execute(text(f'DELETE FROM "{schema}"."{name}"'))
                for sequence in conn.execute(text(
                        "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = :schema"),
                        {"schema": schema}).scalars().all():
                    conn.execute(text(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART'))
            self.free.append(schema)
        except Exception:  # noqa: BLE001 - any doubt about the schema's state: never reuse it
            _drop_postgres_schema(schema)
            self.created.remove(schema)
        finally:
            engine.dispose()

    def drop_all(self) -> None:
        for schema in self.created:
            _drop_postgres_schema(schema)
        self.created.clear()
        self.free.clear()


_POSTGRES_SCHEMAS = _PostgresSchemas()


@pytest.fixture(scope="session", autouse=True)
def _drop_reused_postgres_schemas() -> Iterator[None]:
    yield
    _POSTGRES_SCHEMAS.drop_all()


@contextmanager
def backend_engine(backend: str, directory: Path) -> Iterator[Engine]:
    """An engine on a brand-new, empty database of the given kind, with the shop schema created."""
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template(), directory / "shop.db")
        engine = make_engine(f"sqlite:///{directory / 'shop.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = _POSTGRES_SCHEMAS.acquire()
    engine = create_engine(POSTGRES_URL, future=True, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        _POSTGRES_SCHEMAS.release(schema)


@contextmanager
def backend_url(backend: str, directory: Path) -> Iterator[str]:
    """A database URL (for the CLI) on a brand-new, empty database of the given kind."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'shop.db'}"
        return
    with postgres_schema() as schema:
        yield postgres_url_for_schema(schema)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    with backend_engine(backend, tmp_path) as engine:
        yield engine


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with backend_url(backend, tmp_path) as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def demo_store(request, tmp_path_factory) -> Iterator[Tuple[Engine, object]]:
    """The full default demo store (seed 42), seeded once per backend for read-only tests."""
    directory = tmp_path_factory.mktemp(f"demo-{request.param}")
    with backend_engine(request.param, directory) as engine:
        report = seed_store(engine, SeedConfig(seed=42, today=TODAY), progress=False)
        yield engine, report


@pytest.fixture(scope="session")
def shopify_sample() -> Path:
    for candidate in SHOPIFY_SAMPLE_CANDIDATES:
        if candidate.is_file():
            return candidate
    pytest.fail(
        "the Shopify sample export is missing; looked for: "
        + ", ".join(str(c) for c in SHOPIFY_SAMPLE_CANDIDATES)
        + " (set SHOP_TEST_SHOPIFY_SAMPLE)",
        pytrace=False,
    )
