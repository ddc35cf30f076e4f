"""The catalog's search index, on SQLite (FTS5) and PostgreSQL (tsvector + GIN), and how it stays in sync.

Tables (all prefixed ``search_``, outside the ORM schema, no foreign keys so that dropping the
shop's tables is never blocked by them):

``search_docs``   one row per published product: filter keys, price ranges (in stock / all
                  variants), rating aggregates, creation time, and its variants in compact form
                  (for facet counts); on PostgreSQL also a weighted ``tsvector`` of the normalised
                  text and a ``text[]`` of facet tokens, each with a GIN index.
``search_fts``    (SQLite) FTS5 table, rowid = product id: the normalised text columns title,
                  ptype, category, brand, material, colors, tags, description (bm25 weights
                  10, 8, 3, 4, 2, 2, 1.5, 1), and ``facets`` (weight 0).
``search_dirty``  product ids whose document must be rebuilt, with a version counter.
``search_vocab``  the catalog's own words, product types, categories, colours and sizes (insert-only
                  superset; exact after a full rebuild) for typo correction and category matching.
``search_meta``   format version and the id of the current build.
Plus ``ix_variants_search`` on variants (product_id, price_cents, stock, color, size), which
answers the exact per-variant checks from the index alone.

Staying in sync
---------------
Triggers on products, variants (colour, size, price, stock crossing zero), reviews, brands and
categories only *mark* products dirty (cheap even for bulk inserts; statement-level triggers
with transition tables on PostgreSQL). Every search starts with :func:`prepare_search`, which
(1) builds the whole index when it is missing, of an older format, or its triggers are gone
(e.g. after ``reset_store`` dropped and recreated the shop tables), and (2) otherwise rebuilds
the documents of the dirty products, in the caller's transaction. So a search always sees the
catalog as the caller's session sees it, whoever wrote it (seed, Shopify import, the ORM, raw
SQL). A refresh that is rolled back leaves its marks, and a product changed again while it was
being refreshed keeps its mark (version check): nothing is ever lost, only redone. The CLI
calls :func:`ensure_search_index` after ``seed`` and ``import-shopify`` (and offers
``search-index [--rebuild]``) so that no shopper waits for a large build.

Facet tokens
------------
Filters become tokens in the ``facets`` column, so that the full-text engine intersects them as
fast as words: ``k``+category, ``t``+product type, ``g``+gender, ``b``+brand, and per variant,
with prefix ``a`` (any variant) or ``i`` (a variant in stock): ``c``+colour, ``f``+colour family,
``s``+size, and (in stock only) ``x``+colour and size, ``y``+family and size. Two rare tokens
mark products with no variant in stock or none at all, so that "in stock" is a cheap ``NOT``.
Values are coded as 10 base32 characters of a 48-bit hash: short, plain alphanumeric words that
no tokenizer splits and no shopper types. Colour and size are thereby matched on the *same*
variant; price ranges are checked on ``search_docs`` and, only for products whose variants differ
in price, exactly against ``variants``.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
import uuid
from functools import lru_cache
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import Float, Integer, String, bindparam, column, func, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from shop.models import Product
from shop.search_text import color_family, family_words, key, normalise, phrase_key, stems

logger = logging.getLogger(__name__)

INDEX_FORMAT = "6"
CHUNK = 2000  # products per build step
TEXT_COLUMNS = ("title", "ptype", "category", "brand", "material", "colors", "tags", "description")
# bm25 weights, in TEXT_COLUMNS order, then the facets column (never ranks).
BM25_WEIGHTS = (10.0, 8.0, 3.0, 4.0, 2.0, 2.0, 1.5, 1.0, 0.0)
# PostgreSQL tsvector weight classes per text column (ts_rank default weights D=0.1 C=0.2 B=0.4 A=1.0).
PG_WEIGHTS = {"title": "A", "ptype": "A", "category": "B", "brand": "B", "material": "C", "colors": "C",
              "tags": "C", "description": "D"}
# Columns searched by a category name that is not a known category or product type.
CATEGORY_TEXT_COLUMNS = ("title", "ptype", "category", "brand", "material", "colors", "tags")

SUPPORTED_DIALECTS = ("sqlite", "postgresql")

docs_table = table(
    "search_docs",
    column("product_id", Integer), column("category_id", Integer), column("category_key", String),
    column("type_key", String), column("brand_id", Integer), column("brand_key", String),
    column("gender", String), column("material_key", String), column("rating_avg", Float),
    column("review_count", Integer), column("created_at"),  # raw driver value, passed through
    column("ilo", Integer), column("ihi", Integer), column("alo", Integer), column("ahi", Integer),
    column("variants", String), column("stock_colors", String), column("stock_sizes", String),
)
vocab_table = table("search_vocab", column("kind", String), column("term", String), column("docs", Integer))


# --------------------------------------------------------------------------------------------
# Facet tokens
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=50_000)
def _code(value: str) -> str:
    """A short, stable, alphanumeric code for a value: 10 base32 characters of a 48-bit hash."""
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=6).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def category_token(category_key: str) -> str:
    return "k" + _code(category_key)


def type_token(type_key: str) -> str:
    return "t" + _code(type_key)


def gender_token(gender: str) -> str:
    return "g" + _code(gender)


def brand_token(brand_key: str) -> str:
    return "b" + _code(brand_key)


# Rare tokens, so that "in stock" costs nothing: products with no variant in stock / no variant at all.
# Coded like the others, so that no word a shopper types can equal them.
NO_STOCK_TOKEN = "z" + _code("no variant in stock")
NO_VARIANT_TOKEN = "z" + _code("no variant")


def variant_token(in_stock: bool, color: Optional[str] = None, size: Optional[str] = None,
                  family: Optional[str] = None) -> str:
    """The token for 'a variant [in stock] of this colour or colour family [in this size]' (or size alone)."""
    prefix = "i" if in_stock else "a"
    if family is not None:
        return prefix + ("y" + _code(family + "\x00" + size) if size is not None else "f" + _code(family))
    if color is not None:
        return prefix + ("x" + _code(color + "\x00" + size) if size is not None else "c" + _code(color))
    if size is not None:
        return prefix + "s" + _code(size)
    raise ValueError("a variant token needs a colour, a family or a size")


@lru_cache(maxsize=10_000)
def color_key(color: str) -> str:
    return key(color)


@lru_cache(maxsize=10_000)
def size_key(size: str) -> str:
    return key(size)


def family_of(color: str) -> str:
    """The colour's family, or the colour itself when it belongs to none."""
    return color_family(color) or color_key(color)


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------

@dataclass
class _Doc:
    row: dict
    texts: Dict[str, str]
    facets: List[str]
    vocab: Set[Tuple[str, str]]  # (kind, term) of types, categories, colours, sizes
    words: Set[str]


@lru_cache(maxsize=50_000)
def _variant_tokens(color: str, size: str, in_stock: bool) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...]]:
    """Facet tokens and vocabulary entries of one variant (cached: catalogs repeat colour/size pairs)."""
    ck = color_key(color) if color and color.strip() else None
    sk = size_key(size) if size and size.strip() else None
    fam = family_of(color) if ck else None
    tokens: Dict[str, None] = {}
    for stocked in ((False, True) if in_stock else (False,)):
        if ck:
            tokens[variant_token(stocked, color=ck)] = None
            tokens[variant_token(stocked, family=fam)] = None
        if sk:
            tokens[variant_token(stocked, size=sk)] = None
        if ck and sk and stocked:  # colour and size of the same variant: in stock only (else checked exactly)
            tokens[variant_token(stocked, color=ck, size=sk)] = None
            tokens[variant_token(stocked, family=fam, size=sk)] = None
    vocab = tuple(x for x in (("c", ck) if ck else None, ("s", sk) if sk else None) if x)
    return tuple(tokens), vocab


@lru_cache(maxsize=20_000)
def _product_facets(category_name: str, product_type: str, gender: str, brand_name: str):
    """Keys, tokens and vocabulary entries that depend only on a product's classification."""
    category_key, type_key, brand_key, gender_key = (
        phrase_key(category_name), phrase_key(product_type), key(brand_name), key(gender)
    )
    tokens = tuple(t for t in (
        category_token(category_key) if category_key else None,
        type_token(type_key) if type_key else None,
        gender_token(gender_key) if gender_key else None,
        brand_token(brand_key) if brand_key else None,
    ) if t)
    vocab = tuple(x for x in (("k", category_key) if category_key else None,
                              ("t", type_key) if type_key else None) if x)
    return category_key, type_key, brand_key, gender_key, tokens, vocab


@lru_cache(maxsize=20_000)
def _colors_text(colors: Tuple[str, ...]) -> str:
    return normalise(" ".join(dict.fromkeys(list(colors) + family_words(colors))))


# Column order of the product rows _load_docs reads.
_PRODUCT_SQL = (
    "SELECT p.id, p.title, p.product_type, p.gender, p.material, p.tags, p.description, p.created_at, "
    "p.category_id, p.brand_id, c.name, b.name FROM products p "
    "LEFT JOIN categories c ON c.id = p.category_id LEFT JOIN brands b ON b.id = p.brand_id "
    "WHERE p.published AND "
)


def _build_doc(product: tuple, variants: Sequence[tuple], rating: Optional[tuple]) -> _Doc:
    """One product's document. `product` as _PRODUCT_SQL reads it; variants (color, size, price, stock)."""
    (pid, title, product_type, gender, material, tags, description, created_at,
     category_id, brand_id, category_name, brand_name) = product
    category_key, type_key, brand_key, gender_key, product_tokens, product_vocab = _product_facets(
        category_name or "", product_type or "", gender or "", brand_name or ""
    )
    colors = tuple(dict.fromkeys(c for c, _, _, _ in variants if c and c.strip()))
    texts = {
        "title": normalise(title or ""),
        "ptype": normalise(product_type or ""),
        "category": normalise(category_name or ""),
        "brand": normalise(brand_name or ""),
        "material": normalise(material or ""),
        "colors": _colors_text(colors),
        "tags": normalise(tags or ""),
        "description": normalise(description or ""),
    }
    tokens: Set[str] = set(product_tokens)
    vocab: Set[Tuple[str, str]] = set(product_vocab)
    in_stock_prices = [p for _, _, p, stock in variants if (stock or 0) > 0]
    all_prices = [p for _, _, p, _ in variants]
    for color, size, _, stock in variants:
        variant_tokens, variant_vocab = _variant_tokens(color or "", size or "", (stock or 0) > 0)
        tokens.update(variant_tokens)
        vocab.update(variant_vocab)
    if not in_stock_prices:
        tokens.add(NO_STOCK_TOKEN)
    if not all_prices:
        tokens.add(NO_VARIANT_TOKEN)
    row = {
        "product_id": pid, "category_id": category_id, "category_key": category_key,
        "type_key": type_key, "brand_id": brand_id, "brand_key": brand_key, "gender": gender_key,
        "material_key": key(material or ""), "rating_avg": rating[0] if rating else None,
        "review_count": rating[1] if rating else 0, "created_at": created_at,
        "ilo": min(in_stock_prices) if in_stock_prices else None,
        "ihi": max(in_stock_prices) if in_stock_prices else None,
        "alo": min(all_prices) if all_prices else None,
        "ahi": max(all_prices) if all_prices else None,
        "variants": encode_variants(variants),
        # What a product adds to the colour and size facets when only "in stock" narrows its variants.
        "stock_colors": _FIELD.join(sorted({color_key(c) for c, _, _, st in variants if (st or 0) > 0 and c
                                            and c.strip()})),
        "stock_sizes": _FIELD.join(sorted({_clean_value(z) for _, z, _, st in variants if (st or 0) > 0 and z
                                           and z.strip()})),
    }
    word_set: Set[str] = set()
    for value in texts.values():
        word_set.update(value.split())
    return _Doc(row, texts, sorted(tokens), vocab, word_set)


_FIELD, _RECORD = "\x1f", "\x1e"  # ASCII unit and record separators: never part of a name


def encode_variants(variants: Sequence[tuple]) -> str:
    """(color, size, price, stock) of each variant as one compact string, for facet counting."""
    return _RECORD.join(
        _FIELD.join((_clean_value(color), _clean_value(size), str(price), "1" if (stock or 0) > 0 else "0"))
        for color, size, price, stock in variants
    )


def _clean_value(value: Optional[str]) -> str:
    return (value or "").replace(_FIELD, " ").replace(_RECORD, " ").strip()


def split_field(value: str) -> List[str]:
    return value.split(_FIELD) if value else []


def decode_variants(encoded: str) -> List[Tuple[str, str, int, bool]]:
    """The variants encode_variants wrote: (color, size, price_cents, in_stock)."""
    out = []
    for record in encoded.split(_RECORD) if encoded else ():
        color, size, price, stock = record.split(_FIELD)
        out.append((color, size, int(price), stock == "1"))
    return out


def _id_condition(column_name: str, ids: Sequence[int]) -> str:
    """SQL for 'column among these ids' (integers only, so inlining them is safe)."""
    ids = sorted({int(i) for i in ids})
    if ids[-1] - ids[0] < 4 * len(ids):
        return f"{column_name} BETWEEN {ids[0]} AND {ids[-1]}"
    return f"{column_name} IN ({', '.join(str(i) for i in ids)})"


def _fetch(conn: Connection, sql: str) -> List[tuple]:
    """Rows as plain tuples through the DB-API cursor of this connection (bulk reads, no per-row objects)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _load_docs(conn: Connection, ids: Sequence[int]) -> List[_Doc]:
    """Documents of the published products among these ids (a dense range is read as a range)."""
    if not ids:
        return []
    products = _fetch(conn, _PRODUCT_SQL + _id_condition("p.id", ids))
    if not products:
        return []
    found = [p[0] for p in products]
    variants: Dict[int, list] = defaultdict(list)
    for pid, color, size, price, stock in _fetch(
        conn, "SELECT product_id, color, size, price_cents, stock FROM variants WHERE "
        + _id_condition("product_id", found) + " ORDER BY id"
    ):
        variants[pid].append((color, size, price, stock))
    ratings = {
        pid: (round(float(avg), 4), int(n))
        for pid, avg, n in _fetch(
            conn, "SELECT product_id, avg(rating), count(*) FROM reviews WHERE "
            + _id_condition("product_id", found) + " GROUP BY product_id"
        )
    }
    return [_build_doc(p, variants.get(p[0], ()), ratings.get(p[0])) for p in products]


# --------------------------------------------------------------------------------------------
# DDL
# --------------------------------------------------------------------------------------------

_COMMON_TABLES = (
    "CREATE TABLE IF NOT EXISTS search_meta (key VARCHAR(40) PRIMARY KEY, value VARCHAR(200) NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search_dirty (product_id INTEGER PRIMARY KEY, version INTEGER NOT NULL DEFAULT 1)",
)
_VOCAB_TABLE = (
    "CREATE TABLE search_vocab (kind VARCHAR(1) NOT NULL, term VARCHAR(200) NOT NULL, "
    "docs INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (kind, term))"
)
_DOC_COLUMNS = (
    "product_id INTEGER PRIMARY KEY, category_id INTEGER, category_key VARCHAR(200) NOT NULL DEFAULT '', "
    "type_key VARCHAR(200) NOT NULL DEFAULT '', brand_id INTEGER, brand_key VARCHAR(200) NOT NULL DEFAULT '', "
    "gender VARCHAR(40) NOT NULL DEFAULT '', material_key VARCHAR(200) NOT NULL DEFAULT '', "
    "rating_avg {float}, review_count INTEGER NOT NULL DEFAULT 0, created_at TIMESTAMP, "
    "ilo INTEGER, ihi INTEGER, alo INTEGER, ahi INTEGER, variants TEXT NOT NULL DEFAULT '', "
    "stock_colors TEXT NOT NULL DEFAULT '', stock_sizes TEXT NOT NULL DEFAULT ''"
)
_DOC_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_search_docs_type ON search_docs (type_key, category_key)",
    "CREATE INDEX IF NOT EXISTS ix_search_docs_reviews ON search_docs (review_count DESC, product_id)",
)
# Exact variant checks (price, stock, colour, size of one product) are answered from this index alone.
_VARIANT_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_variants_search ON variants (product_id, price_cents, stock, color, size)"
)

_SQLITE_DOCS = f"CREATE TABLE search_docs ({_DOC_COLUMNS.format(float='FLOAT')})"
_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE search_fts USING fts5("
    + ", ".join(TEXT_COLUMNS)
    + ", facets, tokenize = 'unicode61 remove_diacritics 2')"
)

_DIRTY_UPSERT = "ON CONFLICT (product_id) DO UPDATE SET version = search_dirty.version + 1"


def _sqlite_triggers() -> List[Tuple[str, str]]:
    """(name, DDL) of the SQLite triggers that mark products dirty."""
    def mark(expr: str) -> str:
        return f"INSERT INTO search_dirty (product_id, version) VALUES ({expr}, 1) {_DIRTY_UPSERT};"

    def mark_select(query: str) -> str:
        return f"INSERT INTO search_dirty (product_id, version) {query} {_DIRTY_UPSERT};"

    variant_changed = (
        "OLD.product_id IS NOT NEW.product_id OR OLD.color IS NOT NEW.color OR OLD.size IS NOT NEW.size "
        "OR OLD.price_cents IS NOT NEW.price_cents OR (OLD.stock > 0) IS NOT (NEW.stock > 0)"
    )
    return [
        ("search_trg_products_ins", f"AFTER INSERT ON products BEGIN {mark('NEW.id')} END"),
        ("search_trg_products_upd", f"AFTER UPDATE ON products BEGIN {mark('NEW.id')} {mark('OLD.id')} END"),
        ("search_trg_products_del", f"AFTER DELETE ON products BEGIN {mark('OLD.id')} END"),
        ("search_trg_variants_ins", f"AFTER INSERT ON variants BEGIN {mark('NEW.product_id')} END"),
        ("search_trg_variants_upd",
         f"AFTER UPDATE ON variants WHEN {variant_changed} BEGIN {mark('NEW.product_id')} {mark('OLD.product_id')} END"),
        ("search_trg_variants_del", f"AFTER DELETE ON variants BEGIN {mark('OLD.product_id')} END"),
        ("search_trg_reviews_ins", f"AFTER INSERT ON reviews BEGIN {mark('NEW.product_id')} END"),
        ("search_trg_reviews_upd",
         "AFTER UPDATE OF rating, product_id ON reviews "
         f"BEGIN {mark('NEW.product_id')} {mark('OLD.product_id')} END"),
        ("search_trg_reviews_del", f"AFTER DELETE ON reviews BEGIN {mark('OLD.product_id')} END"),
        ("search_trg_brands_upd",
         f"AFTER UPDATE OF name ON brands BEGIN {mark_select('SELECT id, 1 FROM products WHERE brand_id = NEW.id')} END"),
        ("search_trg_categories_upd",
         "AFTER UPDATE OF name ON categories "
         f"BEGIN {mark_select('SELECT id, 1 FROM products WHERE category_id = NEW.id')} END"),
    ]


def _pg_functions() -> List[str]:
    def function(name: str, body: str) -> str:
        return (
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
            f"SET search_path FROM CURRENT AS $$ BEGIN {body} RETURN NULL; END $$"
        )

    def from_rows(rows: str, id_column: str) -> str:
        return (
            f"INSERT INTO search_dirty (product_id, version) SELECT DISTINCT {id_column}, 1 FROM {rows} "
            f"WHERE {id_column} IS NOT NULL {_DIRTY_UPSERT};"
        )

    def one(expr: str) -> str:
        return f"INSERT INTO search_dirty (product_id, version) VALUES ({expr}, 1) {_DIRTY_UPSERT};"

    return [
        function("search_dirty_new_id", from_rows("new_rows", "id")),
        function("search_dirty_old_id", from_rows("old_rows", "id")),
        function("search_dirty_new_product_id", from_rows("new_rows", "product_id")),
        function("search_dirty_old_product_id", from_rows("old_rows", "product_id")),
        function("search_dirty_row_id", f"{one('NEW.id')} IF NEW.id <> OLD.id THEN {one('OLD.id')} END IF;"),
        function("search_dirty_row_product_id",
                 f"{one('NEW.product_id')} IF NEW.product_id <> OLD.product_id THEN {one('OLD.product_id')} END IF;"),
        function("search_dirty_brand",
                 "INSERT INTO search_dirty (product_id, version) SELECT id, 1 FROM products "
                 f"WHERE brand_id = NEW.id {_DIRTY_UPSERT};"),
        function("search_dirty_category",
                 "INSERT INTO search_dirty (product_id, version) SELECT id, 1 FROM products "
                 f"WHERE category_id = NEW.id {_DIRTY_UPSERT};"),
    ]


def _pg_triggers() -> List[Tuple[str, str, str]]:
    """(name, table, DDL after 'CREATE TRIGGER name') of the PostgreSQL triggers."""
    variant_changed = (
        "OLD.product_id IS DISTINCT FROM NEW.product_id OR OLD.color IS DISTINCT FROM NEW.color "
        "OR OLD.size IS DISTINCT FROM NEW.size OR OLD.price_cents IS DISTINCT FROM NEW.price_cents "
        "OR (OLD.stock > 0) IS DISTINCT FROM (NEW.stock > 0)"
    )
    statement = "FOR EACH STATEMENT EXECUTE FUNCTION"
    return [
        ("search_trg_products_ins", "products",
         f"AFTER INSERT ON products REFERENCING NEW TABLE AS new_rows {statement} search_dirty_new_id()"),
        ("search_trg_products_upd", "products",
         "AFTER UPDATE ON products FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) "
         "EXECUTE FUNCTION search_dirty_row_id()"),
        ("search_trg_products_del", "products",
         f"AFTER DELETE ON products REFERENCING OLD TABLE AS old_rows {statement} search_dirty_old_id()"),
        ("search_trg_variants_ins", "variants",
         f"AFTER INSERT ON variants REFERENCING NEW TABLE AS new_rows {statement} search_dirty_new_product_id()"),
        ("search_trg_variants_upd", "variants",
         f"AFTER UPDATE ON variants FOR EACH ROW WHEN ({variant_changed}) EXECUTE FUNCTION search_dirty_row_product_id()"),
        ("search_trg_variants_del", "variants",
         f"AFTER DELETE ON variants REFERENCING OLD TABLE AS old_rows {statement} search_dirty_old_product_id()"),
        ("search_trg_reviews_ins", "reviews",
         f"AFTER INSERT ON reviews REFERENCING NEW TABLE AS new_rows {statement} search_dirty_new_product_id()"),
        ("search_trg_reviews_upd", "reviews",
         "AFTER UPDATE ON reviews FOR EACH ROW WHEN (OLD.rating IS DISTINCT FROM NEW.rating "
         "OR OLD.product_id IS DISTINCT FROM NEW.product_id) EXECUTE FUNCTION search_dirty_row_product_id()"),
        ("search_trg_reviews_del", "reviews",
         f"AFTER DELETE ON reviews REFERENCING OLD TABLE AS old_rows {statement} search_dirty_old_product_id()"),
        ("search_trg_brands_upd", "brands",
         "AFTER UPDATE OF name ON brands FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) "
         "EXECUTE FUNCTION search_dirty_brand()"),
        ("search_trg_categories_upd", "categories",
         "AFTER UPDATE OF name ON categories FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) "
         "EXECUTE FUNCTION search_dirty_category()"),
    ]


TRIGGER_COUNT = len(_sqlite_triggers())
_PG_DOCUMENT = " || ".join(
    f"setweight(to_tsvector('simple'::regconfig, %({name})s), '{PG_WEIGHTS[name]}')" for name in TEXT_COLUMNS
)
# The text itself is not kept on PostgreSQL: narrow rows make the bitmap heap scans cheap.
_PG_DOCS = (
    f"CREATE TABLE search_docs ({_DOC_COLUMNS.format(float='DOUBLE PRECISION')}, "
    "facets TEXT[] NOT NULL DEFAULT '{}', document tsvector NOT NULL DEFAULT ''::tsvector)"
)
_PG_DOC_COLUMNS = [c.name for c in docs_table.columns]
_PG_INSERT = f"INSERT INTO search_docs ({', '.join(_PG_DOC_COLUMNS)}, facets, document) VALUES %s"
_PG_TEMPLATE = (
    "(" + ", ".join(f"%({c})s" for c in _PG_DOC_COLUMNS) + f", CAST(%(facets)s AS text[]), {_PG_DOCUMENT})"
)
_PG_DOC_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_search_docs_document ON search_docs USING gin (document)",
    "CREATE INDEX IF NOT EXISTS ix_search_docs_facets ON search_docs USING gin (facets)",
)


def _dialect(conn: Connection) -> str:
    name = conn.dialect.name
    if name not in SUPPORTED_DIALECTS:
        raise RuntimeError(f"catalog search supports SQLite and PostgreSQL, not {name}")
    return name


def _create_support_tables(conn: Connection) -> None:
    for ddl in _COMMON_TABLES:
        conn.execute(text(ddl))
    conn.execute(text(_VARIANT_INDEX))


def _install_triggers(conn: Connection) -> None:
    if _dialect(conn) == "sqlite":
        for name, body in _sqlite_triggers():
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            conn.execute(text(f"CREATE TRIGGER {name} {body}"))
        return
    for ddl in _pg_functions():
        conn.execute(text(ddl))
    for name, table_name, body in _pg_triggers():
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table_name}"))
        conn.execute(text(f"CREATE TRIGGER {name} {body}"))


def _recreate_document_tables(conn: Connection) -> None:
    dialect = _dialect(conn)
    conn.execute(text("DROP TABLE IF EXISTS search_docs"))
    conn.execute(text("DROP TABLE IF EXISTS search_vocab"))
    conn.execute(text(_VOCAB_TABLE))
    if dialect == "sqlite":
        conn.execute(text("DROP TABLE IF EXISTS search_fts"))
        conn.execute(text(_SQLITE_DOCS))
        conn.execute(text(_SQLITE_FTS))
    else:
        conn.execute(text(_PG_DOCS))


def _create_document_indexes(conn: Connection) -> None:
    for ddl in _DOC_INDEXES:
        conn.execute(text(ddl))
    if _dialect(conn) == "postgresql":
        for ddl in _PG_DOC_INDEXES:
            conn.execute(text(ddl))


# --------------------------------------------------------------------------------------------
# Writing documents
# --------------------------------------------------------------------------------------------

def _write_docs(conn: Connection, docs: Sequence[_Doc]) -> None:
    if not docs:
        return
    if conn.dialect.name == "sqlite":
        conn.execute(docs_table.insert(), [d.row for d in docs])
        conn.execute(
            text(
                "INSERT INTO search_fts (rowid, " + ", ".join(TEXT_COLUMNS) + ", facets) VALUES (:rowid, "
                + ", ".join(f":{c}" for c in TEXT_COLUMNS) + ", :facets)"
            ),
            [{"rowid": d.row["product_id"], **d.texts, "facets": " ".join(d.facets)} for d in docs],
        )
    else:
        rows = [{**d.row, **d.texts, "facets": d.facets} for d in docs]
        if conn.dialect.driver != "psycopg2":  # any other driver: one statement per row, slower
            statement = _PG_INSERT.replace("VALUES %s", "VALUES " + _PG_TEMPLATE.replace("%(", ":").replace(")s", ""))
            conn.execute(text(statement), rows)
            return
        from psycopg2.extras import execute_values

        cursor = conn.connection.cursor()
        try:
            execute_values(cursor, _PG_INSERT, rows, template=_PG_TEMPLATE, page_size=500)
        finally:
            cursor.close()


def _delete_docs(conn: Connection, ids: Sequence[int]) -> None:
    if not ids:
        return
    for statement in ("DELETE FROM search_docs WHERE product_id IN :ids",) + (
        ("DELETE FROM search_fts WHERE rowid IN :ids",) if conn.dialect.name == "sqlite" else ()
    ):
        conn.execute(text(statement).bindparams(bindparam("ids", expanding=True)), {"ids": list(ids)})


def _add_vocab(conn: Connection, terms: Iterable[Tuple[str, str]]) -> None:
    rows = [{"kind": k, "term": t[:200], "docs": 1} for k, t in sorted(set(terms))]
    for start in range(0, len(rows), 1000):
        conn.execute(
            text("INSERT INTO search_vocab (kind, term, docs) VALUES (:kind, :term, :docs) "
                 "ON CONFLICT (kind, term) DO NOTHING"),
            rows[start:start + 1000],
        )


def _set_meta(conn: Connection, values: Dict[str, str]) -> None:
    for name, value in values.items():
        conn.execute(
            text("INSERT INTO search_meta (key, value) VALUES (:k, :v) ON CONFLICT (key) DO UPDATE SET value = :v"),
            {"k": name, "v": value},
        )


def _full_build(conn: Connection, progress: bool = False) -> int:
    """Build the whole index from the catalog in this transaction. Returns the number of documents."""
    started = time.monotonic()
    _create_support_tables(conn)
    _recreate_document_tables(conn)
    _install_triggers(conn)
    conn.execute(text("DELETE FROM search_dirty"))
    total = conn.execute(select(func.count(Product.id))).scalar_one()
    vocab: Counter = Counter()
    words: Counter = Counter()
    written = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="products", desc="search index", leave=False, dynamic_ncols=True)
    try:
        after = None
        while True:
            condition = Product.id > after if after is not None else Product.id.isnot(None)
            ids = conn.execute(select(Product.id).where(condition).order_by(Product.id).limit(CHUNK)).scalars().all()
            if not ids:
                break
            docs = _load_docs(conn, ids)
            _write_docs(conn, docs)
            for d in docs:
                vocab.update(d.vocab)
                words.update(d.words)
            written += len(docs)
            after = ids[-1]
            if bar is not None:
                bar.update(len(ids))
    finally:
        if bar is not None:
            bar.close()
    vocab.update({("w", w): n for w, n in words.items()})
    rows = [{"kind": k, "term": t[:200], "docs": n} for (k, t), n in sorted(vocab.items())]
    for start in range(0, len(rows), 5000):
        conn.execute(vocab_table.insert(), rows[start:start + 5000])
    _create_document_indexes(conn)
    if conn.dialect.name == "sqlite":
        conn.execute(text("INSERT INTO search_fts (search_fts) VALUES ('optimize')"))
    else:
        # Searches filter by kind of product first: keep each kind's rows together on disk.
        conn.execute(text("CLUSTER search_docs USING ix_search_docs_type"))
        conn.execute(text("ANALYZE search_docs"))
    _set_meta(conn, {"format": INDEX_FORMAT, "build": uuid.uuid4().hex})
    logger.info("search index built: %d products in %.1fs", written, time.monotonic() - started)
    return written


def _refresh_dirty(conn: Connection, limit: Optional[int] = None) -> int:
    """Rebuild the documents of the products marked dirty. Returns how many were processed."""
    processed = 0
    while True:
        batch = conn.execute(
            text("SELECT product_id, version FROM search_dirty ORDER BY product_id LIMIT :n"), {"n": CHUNK}
        ).all()
        if not batch:
            return processed
        ids = [pid for pid, _ in batch]
        docs = _load_docs(conn, ids)
        _delete_docs(conn, ids)
        _write_docs(conn, docs)
        terms: Set[Tuple[str, str]] = set()
        for d in docs:
            terms |= d.vocab
            terms.update(("w", w) for w in d.words)
        _add_vocab(conn, terms)
        # A product changed again meanwhile (another transaction) keeps its mark: version differs.
        conn.execute(
            text("DELETE FROM search_dirty WHERE product_id = :pid AND version = :version"),
            [{"pid": pid, "version": version} for pid, version in batch],
        )
        processed += len(batch)
        if len(batch) < CHUNK or (limit is not None and processed >= limit):
            return processed


# --------------------------------------------------------------------------------------------
# State: is the index there, complete and current?
# --------------------------------------------------------------------------------------------

_SEARCH_TABLES = ("search_meta", "search_dirty", "search_docs", "search_vocab")


@dataclass(frozen=True)
class IndexState:
    dialect: str
    build: str  # changes with every full build
    vocab_size: int  # grows when refreshes add words, types, colours or sizes


def _inspect(conn: Connection) -> Tuple[bool, bool, int]:
    """(products table exists, all index tables exist, number of our triggers)."""
    if conn.dialect.name == "sqlite":
        names = _SEARCH_TABLES + ("search_fts", "products")
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN :names), "
                "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'products'), "
                "(SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'search_trg_%')"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": list(names)},
        ).one()
        return bool(row[1]), row[0] == len(names), int(row[2])
    row = conn.execute(
        text(
            "SELECT to_regclass('products') IS NOT NULL, "
            "to_regclass('search_meta') IS NOT NULL AND to_regclass('search_dirty') IS NOT NULL "
            "AND to_regclass('search_docs') IS NOT NULL AND to_regclass('search_vocab') IS NOT NULL, "
            "(SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'search\\_trg\\_%' AND tgrelid IN "
            "(to_regclass('products'), to_regclass('variants'), to_regclass('reviews'), to_regclass('brands'), "
            "to_regclass('categories')))"
        )
    ).one()
    return bool(row[0]), bool(row[1]), int(row[2])


def _read_state(conn: Connection) -> Tuple[Optional[str], Optional[str], bool, int]:
    row = conn.execute(
        text(
            "SELECT (SELECT value FROM search_meta WHERE key = 'format'), "
            "(SELECT value FROM search_meta WHERE key = 'build'), "
            "EXISTS (SELECT 1 FROM search_dirty), (SELECT count(*) FROM search_vocab)"
        )
    ).one()
    return row[0], row[1], bool(row[2]), int(row[3])


def _connection(target: Union[Session, Connection]) -> Connection:
    return target.connection() if isinstance(target, Session) else target


def prepare_search(target: Union[Session, Connection]) -> Optional[IndexState]:
    """Make the index complete and current for this session; None when the shop has no schema.

    Runs before every search, in the caller's transaction: a build when the index is missing or
    stale as a whole, else a refresh of the products marked dirty by the triggers.
    """
    conn = _connection(target)
    dialect = _dialect(conn)
    has_products, has_tables, triggers = _inspect(conn)
    if not has_products:
        return None
    state = _read_state(conn) if has_tables else (None, None, False, 0)
    if not has_tables or triggers != TRIGGER_COUNT or state[0] != INDEX_FORMAT or not state[1]:
        logger.info("building the catalog search index (%s)", "missing" if not has_tables else "out of date")
        _full_build(conn)
        state = _read_state(conn)
    elif state[2]:
        _refresh_dirty(conn)
        state = _read_state(conn)
    if dialect == "postgresql":
        # The exact-variant subqueries make the planner's cost estimates high enough to trigger JIT
        # compilation, which costs a second per query and saves nothing on queries this short.
        conn.execute(text("SET LOCAL jit = off"))
    return IndexState(dialect=dialect, build=state[1] or "", vocab_size=state[3])


def ensure_search_index(engine: Engine, progress: bool = False) -> int:
    """Create the index (tables, triggers, indexes) if needed and bring it up to date; commits.

    Returns the number of products (re)indexed. Call it after bulk loads (seed, import); searches
    also do it by themselves, so forgetting it costs time once, never correctness.
    """
    with engine.begin() as conn:
        has_products, has_tables, triggers = _inspect(conn)
        if not has_products:
            raise RuntimeError("the shop has no tables yet: run `python -m shop init-db` or `seed` first")
        state = _read_state(conn) if has_tables else (None, None, False, 0)
        built = not has_tables or triggers != TRIGGER_COUNT or state[0] != INDEX_FORMAT or not state[1]
        count = _full_build(conn, progress=progress) if built else _refresh_dirty(conn)
    if built:
        _vacuum(engine)
    return count


def _vacuum(engine: Engine) -> None:
    """After a bulk build on PostgreSQL: set hint bits and the visibility map once, not in searches."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) search_docs"))


def rebuild_search_index(target: Union[Engine, Session, Connection], progress: bool = False) -> int:
    """Rebuild the whole index from the catalog. Returns the number of documents written."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            count = _full_build(conn, progress=progress)
        _vacuum(target)
        return count
    return _full_build(_connection(target), progress=progress)


def refresh_search_index(target: Union[Session, Connection]) -> int:
    """Rebuild the documents of products changed since the last refresh. Returns how many."""
    return _refresh_dirty(_connection(target))


# --------------------------------------------------------------------------------------------
# Vocabulary (cached per index build and size)
# --------------------------------------------------------------------------------------------

@dataclass
class Vocabulary:
    words: Dict[str, int] = field(default_factory=dict)  # stem -> documents (approximate after refreshes)
    types: Dict[str, int] = field(default_factory=dict)  # product type key -> documents
    categories: Dict[str, int] = field(default_factory=dict)
    colors: Dict[str, int] = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=dict)
    word_list: List[str] = field(default_factory=list)


_vocab_cache: Dict[Tuple[str, int], Vocabulary] = {}
_vocab_lock = threading.Lock()


def vocabulary(target: Union[Session, Connection], state: IndexState) -> Vocabulary:
    cache_key = (state.build, state.vocab_size)
    found = _vocab_cache.get(cache_key)
    if found is not None:
        return found
    vocab = Vocabulary()
    kinds = {"w": vocab.words, "t": vocab.types, "k": vocab.categories, "c": vocab.colors, "s": vocab.sizes}
    for kind, term, docs in _connection(target).execute(text("SELECT kind, term, docs FROM search_vocab")):
        if kind in kinds:
            kinds[kind][term] = docs
    vocab.word_list = sorted(vocab.words)
    with _vocab_lock:
        if len(_vocab_cache) > 32:
            _vocab_cache.clear()
        _vocab_cache[cache_key] = vocab
    return vocab


def doc_text_stems(text_value: str) -> List[str]:
    """Stems of a query text, as the index spells them."""
    return stems(text_value)
