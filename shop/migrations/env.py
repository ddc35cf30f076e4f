"""Alembic's entry point: runs the migrations on the connection handed over by shop.migrations.upgrade,
or, from Alembic's own command line, on SHOP_DATABASE_URL."""
from logging.config import fileConfig

from alembic import context

from shop.db import database_url, make_engine, shop_metadata

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _managed(obj, name, type_, reflected, compare_to) -> bool:
    """The analytics tables (shop/analytics.py) create themselves on first use; autogenerate must
    not propose dropping them."""
    return not (type_ == "table" and str(name).startswith("analytics_"))


def run_migrations(connection) -> None:
    # Batch mode rebuilds SQLite tables for the ALTERs SQLite cannot do in place.
    context.configure(
        connection=connection, target_metadata=shop_metadata(), render_as_batch=True, compare_type=True,
        include_object=_managed,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=shop_metadata(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_migrations(config.attributes["connection"])
else:
    engine = make_engine(database_url())
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()
