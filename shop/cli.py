"""`python -m shop <command>`: the shop's data commands.

Every command works on the database named by SHOP_DATABASE_URL (default: the SQLite file
var/shop.db at the repository root); `--database-url` overrides it for one call.
"""
from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import List, Optional

from shop.db import database_url, make_engine
from shop.analytics import add_analytics_commands, cmd_analytics, cmd_unanswered
from shop.broadcasts import add_broadcast_command, cmd_broadcast
from shop.leads import add_lead_commands, cmd_leads
from shop.report import add_report_command, cmd_report
from shop.worker import add_worker_command, cmd_worker

EXAMPLES = """\
examples:
  python -m shop migrate                     # create or upgrade the schema (Alembic migrations)
  python -m shop init-db
  python -m shop seed                        # the demo store (1,000 products, 1,200 orders)
  python -m shop seed --if-empty             # only when the catalog has no products yet
  python -m shop seed --reset --size large   # replace everything with a 100,000-product catalog
  python -m shop import-shopify products_export.csv
  python -m shop stats
  python -m shop lookups                     # NLU lookup tables from the catalog -> data/nlu/lookups
  python -m shop search-index --rebuild      # rebuild the catalog search index
  python -m shop bench-search                # search engine vs naive scan (needs `seed --size large`)
  python -m shop leads export --out leads.csv  # every lead with stage, score, reasons, consent
  python -m shop worker                      # background jobs: cart reminders, stock alerts, lead delivery
  python -m shop report --days 14            # per day: leads, ratings, complaints, reminders, recovered carts
  python -m shop broadcast --kind new-arrivals --dry-run   # who would get which personalised picks
  SHOP_DATABASE_URL=postgresql+psycopg2://user@host/shop python -m shop stats
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2024-05-31") from None


def build_parser() -> argparse.ArgumentParser:
    from shop.seed import SIZE_PRESETS

    # --database-url is accepted before or after the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url", metavar="URL", default=argparse.SUPPRESS,
        help="SQLAlchemy database URL; overrides SHOP_DATABASE_URL "
        "(default: the SQLite file var/shop.db at the repository root)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m shop", description="Data commands of the shop backend: schema, demo data, imports, stats.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    migrate = commands.add_parser(
        "migrate", parents=[common], help="create or upgrade the shop schema with its migrations",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Apply the schema migrations (shop/migrations, Alembic) up to the newest revision, or to\n"
            "--revision. An empty database gets the whole schema; data is kept. On PostgreSQL the database\n"
            "itself is created first when the server does not have it yet."
        ),
    )
    migrate.add_argument("--revision", default="head", help="target revision (default: head, the newest)")

    commands.add_parser(
        "init-db", parents=[common], help="create the shop's tables (the same as `migrate`)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create or upgrade the shop schema with its migrations. Existing data is kept.",
    )

    demo, large = SIZE_PRESETS["demo"], SIZE_PRESETS["large"]
    seed = commands.add_parser(
        "seed", parents=[common], help="generate the deterministic demo store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Generate a demo store: categories, brands, products with colour/size variants, reviews,\n"
            "customers, discount codes and a year of orders in every status (with returns and refunds).\n"
            "The same --seed (and --today) always produces the same data. Refuses to touch a catalog\n"
            "that already has products unless --reset (replace it) or --if-empty (do nothing) is given."
        ),
        epilog=(
            f"sizes:\n  demo   {demo['products']:,} products, {demo['reviews']:,} reviews, {demo['customers']:,} "
            f"customers, {demo['orders']:,} orders\n  large  {large['products']:,} products, {large['reviews']:,} "
            f"reviews, {large['customers']:,} customers, {large['orders']:,} orders (for benchmarks)\n"
            "--products/--reviews/--customers/--orders override single numbers of the chosen size."
        ),
    )
    seed.add_argument("--seed", type=int, default=42, help="random seed; same seed, same store (default: 42)")
    seed.add_argument("--size", choices=sorted(SIZE_PRESETS), default="demo", help="preset size (default: demo)")
    seed.add_argument("--products", type=_positive, metavar="N", help="number of products")
    seed.add_argument("--reviews", type=_positive, metavar="N", help="number of reviews")
    seed.add_argument("--customers", type=_positive, metavar="N", help="number of customers")
    seed.add_argument("--orders", type=_positive, metavar="N", help="number of orders")
    seed.add_argument("--today", type=_day, metavar="YYYY-MM-DD",
                      help="reference day: orders lie in the 12 months before it (default: today, UTC)")
    mode = seed.add_mutually_exclusive_group()
    mode.add_argument("--if-empty", action="store_true", help="seed only when the catalog has no products")
    mode.add_argument("--reset", action="store_true", help="drop ALL shop data first, then seed")
    seed.add_argument("--quiet", action="store_true", help="no progress bar")

    shopify = commands.add_parser(
        "import-shopify", parents=[common], help="import a Shopify product CSV export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Import products from a Shopify product CSV export (Products > Export in the Shopify admin).\n"
            "Products are matched by Handle and variants by their Color/Size options, so importing the\n"
            "same file again updates prices and stock instead of duplicating. A broken row is reported\n"
            "with its line number and its product is skipped (left as it was); the rest is imported."
        ),
        epilog="exit status: 0 when the file was read (even with skipped rows); 1 when it cannot be read at all.",
    )
    shopify.add_argument("path", help="the CSV file")

    commands.add_parser(
        "stats", parents=[common], help="count products, variants, reviews, customers and orders by status",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print how many products, variants, reviews, customers and orders (by status) the shop has.",
    )
    lookups = commands.add_parser(
        "lookups", parents=[common], help="write Rasa NLU lookup tables (category, brand, color) from the catalog",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write category.yml (category names and product types, singular and plural), brand.yml and\n"
            "color.yml (distinct variant colours) in Rasa 3.x NLU format, generated from the catalog in the\n"
            "database. Sorted and deterministic: the same catalog always gives the same files."
        ),
    )
    lookups.add_argument("--out", metavar="DIR", default=None,
                         help="directory to write into (default: data/nlu/lookups in the repository)")

    index = commands.add_parser(
        "search-index", parents=[common], help="build or refresh the catalog search index",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Bring the catalog search index up to date (tables, triggers, documents). Searches do this by\n"
            "themselves; run it after bulk changes so that no shopper waits for it. `seed` and\n"
            "`import-shopify` run it too."
        ),
    )
    index.add_argument("--rebuild", action="store_true", help="rebuild every document from scratch")
    index.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = commands.add_parser(
        "bench-search", parents=[common], help="time catalog searches: the search engine vs a naive LIKE scan",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a fixed, seeded mix of typical chat searches through the search engine and through a naive\n"
            "LIKE scan, and print p50/p99 latencies and the speed-up. Needs the large catalog:\n"
            "  python -m shop seed --reset --size large"
        ),
    )
    # Defaults as in shop.bench_search (not imported here: the parser stays light for every command).
    bench.add_argument("--queries", type=_positive, default=100, metavar="N", help="number of searches (default: 100)")
    bench.add_argument("--seed", type=int, default=7, help="seed of the query mix (default: 7)")
    bench.add_argument("--min-products", type=_positive, default=100_000, metavar="N",
                       help="refuse to run on a smaller catalog (default: 100,000)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    add_analytics_commands(commands, common, _day)  # analytics, unanswered (shop/analytics.py)
    add_broadcast_command(commands, common)  # broadcast (shop/broadcasts.py)
    add_lead_commands(commands, common)  # leads export, leads deliver (shop/leads.py)
    add_worker_command(commands, common)  # worker (shop/worker.py)
    add_report_command(commands, common)  # report (shop/report.py)
    return parser


def _engine(args: argparse.Namespace):
    return make_engine(getattr(args, "database_url", None) or database_url())


def _display_url(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _migrate(args: argparse.Namespace, revision: str = "head"):
    """An engine on a database whose schema is at `revision`, created by the migrations if need be."""
    from shop.migrations import current_revision, ensure_database, upgrade

    url = getattr(args, "database_url", None) or database_url()
    if ensure_database(url):
        print("Created the database.")
    engine = make_engine(url)
    before = current_revision(engine)
    upgrade(engine, revision)
    after = current_revision(engine)
    if before != after:
        print(f"Schema of {_display_url(engine)} migrated from revision {before or '(none)'} to {after}.")
    return engine


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from shop.migrations import current_revision, head_revision

    try:
        engine = _migrate(args, args.revision)
    except CommandError as exc:  # e.g. an unknown revision: nothing was applied
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    revision = current_revision(engine)
    newest = " (the newest)" if revision == head_revision() else ""
    print(f"Schema of {_display_url(engine)} at revision {revision}{newest}.")
    return 0


def cmd_init_db(args: argparse.Namespace) -> int:
    engine = _migrate(args)
    print(f"Schema ready in {_display_url(engine)}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from shop.seed import SeedConfig, SeedError, reset_store, seed_store

    config = SeedConfig.preset(
        args.size, seed=args.seed, products=args.products, reviews=args.reviews, customers=args.customers,
        orders=args.orders, today=args.today,
    )
    engine = _migrate(args)
    if args.reset:
        reset_store(engine)
    try:
        report = seed_store(engine, config, if_empty=args.if_empty, progress=not args.quiet)
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    if not report.seeded:
        print(f"Not seeding: {report.message}.")
        return 0
    print(
        f"Seeded {_display_url(engine)} in {report.seconds:.1f}s (seed {config.seed}): "
        f"{report.products:,} products, {report.variants:,} variants, {report.reviews:,} reviews, "
        f"{report.customers:,} customers, {report.orders:,} orders, {report.discount_codes} discount codes"
    )
    if report.orders_by_status:
        print("  orders: " + ", ".join(f"{s} {n}" for s, n in report.orders_by_status.items()))
    _refresh_search_index(engine, progress=not args.quiet)
    return 0


def _refresh_search_index(engine, progress: bool = False) -> None:
    from shop.search_index import ensure_search_index

    indexed = ensure_search_index(engine, progress=progress)
    print(f"Search index up to date ({indexed:,} products indexed).")


def cmd_import_shopify(args: argparse.Namespace) -> int:
    from shop.shopify_import import ShopifyImportError, import_shopify_csv

    engine = _migrate(args)
    try:
        report = import_shopify_csv(engine, args.path)
    except ShopifyImportError as exc:
        print(f"import-shopify: {exc}. Nothing was imported.", file=sys.stderr)
        return 1
    print(report.summary())
    _refresh_search_index(engine)
    return 0


def cmd_lookups(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shop.db import session_scope
    from shop.lookups import DEFAULT_OUT_DIR, write_lookup_tables

    engine = _engine(args)
    out_dir = Path(args.out) if args.out else DEFAULT_OUT_DIR
    with session_scope(engine) as session:
        counts = write_lookup_tables(session, out_dir)
    print(f"Wrote lookup tables to {out_dir}: " + ", ".join(f"{name}.yml {n} entries" for name, n in counts.items()))
    return 0


def cmd_search_index(args: argparse.Namespace) -> int:
    from shop.search_index import rebuild_search_index

    engine = _engine(args)
    if args.rebuild:
        indexed = rebuild_search_index(engine, progress=not args.quiet)
        print(f"Search index rebuilt: {indexed:,} products.")
        return 0
    _refresh_search_index(engine, progress=not args.quiet)
    return 0


def cmd_bench_search(args: argparse.Namespace) -> int:
    from shop.bench_search import BenchError, run_benchmark

    engine = _engine(args)
    try:
        report = run_benchmark(engine, args.queries, args.seed, args.min_products, progress=not args.quiet)
    except BenchError as exc:
        print(f"bench-search: {exc}", file=sys.stderr)
        return 1
    print(f"Search benchmark on {_display_url(engine)} ({engine.dialect.name}): {report.products:,} products, "
          f"{report.queries} queries (seed {report.seed})")
    for line in report.lines():
        print("  " + line)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from shop.seed import store_counts

    engine = _engine(args)
    counts = store_counts(engine)
    if not counts:
        print(f"{_display_url(engine)} has no shop tables yet: run `python -m shop init-db` or `seed`.")
        return 0
    by_status = counts.pop("orders_by_status")
    width = max(len(k) for k in list(counts) + list(by_status)) + 4
    print(f"Shop data in {_display_url(engine)}")
    for name, value in counts.items():
        print(f"  {name:<{width}}{value:>10,}")
    print("  orders by status")
    for status, value in by_status.items():
        print(f"    {status:<{width - 2}}{value:>10,}")
    return 0


COMMANDS = {
    "migrate": cmd_migrate, "init-db": cmd_init_db, "seed": cmd_seed, "import-shopify": cmd_import_shopify,
    "stats": cmd_stats,
    "lookups": cmd_lookups, "search-index": cmd_search_index, "bench-search": cmd_bench_search,
    "analytics": cmd_analytics, "unanswered": cmd_unanswered,
    "broadcast": cmd_broadcast,
    "leads": cmd_leads,
    "worker": cmd_worker, "report": cmd_report,
}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; nothing of the running step was kept", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear one-line message instead of a traceback for database trouble
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            print(f"{args.command}: database error: {detail}", file=sys.stderr)
            return 2
        raise
