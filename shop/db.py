"""Engine and session factory for the shop database.

The URL comes from SHOP_DATABASE_URL; without it the shop lives in a SQLite file under var/
at the repository root, so every command works the same from any working directory.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{REPO_ROOT / 'var' / 'shop.db'}"


def database_url() -> str:
    return os.environ.get("SHOP_DATABASE_URL") or DEFAULT_DATABASE_URL


def database_timeout_seconds() -> Optional[float]:
    """How long one connection attempt, lock wait or statement may take (SHOP_DB_TIMEOUT_SECONDS), so a
    database that is down or hung fails fast. The action server sets it (a shopper is waiting); the
    CLI, seeding and migrations leave it unset and may run long statements."""
    value = os.environ.get("SHOP_DB_TIMEOUT_SECONDS")
    return float(value) if value else None


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the action server read while a seed or import writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int((database_timeout_seconds() or 10) * 1000)}")
    cursor.close()


def make_engine(url: Optional[str] = None) -> Engine:
    url = url or database_url()
    timeout = database_timeout_seconds()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, future=True, connect_args={"check_same_thread": False, "timeout": timeout or 30}
        )
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    if timeout is None:
        return create_engine(url, future=True, pool_pre_ping=True)
    if url.startswith("postgresql"):
        # libpq counts connect_timeout in whole seconds (at least 2); statement_timeout covers lock waits too.
        # Kept beside any options of the URL itself (e.g. a search_path), which connect_args would replace.
        options = " ".join(filter(None, [make_url(url).query.get("options"),
                                         f"-c statement_timeout={int(timeout * 1000)}"]))
        connect_args = {"connect_timeout": max(2, round(timeout)), "options": options}
        return create_engine(url, future=True, pool_pre_ping=True, pool_timeout=timeout, connect_args=connect_args)
    return create_engine(url, future=True, pool_pre_ping=True, pool_timeout=timeout)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per URL for the life of the process."""
    return make_engine(url)


def get_engine() -> Engine:
    return engine_for(database_url())


@lru_cache(maxsize=8)
def _session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


@contextmanager
def session_scope(engine: Optional[Engine] = None) -> Iterator[Session]:
    """A unit of work: commits when the block ends cleanly, rolls back on any error."""
    session = _session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def shop_metadata() -> MetaData:
    """Every table of the shop: the schema that create_schema builds and the migrations must match."""
    from shop.models import Base
    # Services that own extra tables define them beside their code; importing registers them.
    import shop.carts, shop.checkout, shop.newsletter, shop.payments, shop.promotions  # noqa: F401,E401
    import shop.verification  # noqa: F401
    import shop.handoff  # noqa: F401
    import shop.reminders, shop.alerts, shop.broadcasts  # noqa: F401,E401

    return Base.metadata


def create_schema(engine: Optional[Engine] = None) -> None:
    """Create the missing tables straight from the models (tests, quick starts); production databases
    are built and kept current by the migrations (shop.migrations, `python -m shop migrate`)."""
    shop_metadata().create_all(engine or get_engine())
