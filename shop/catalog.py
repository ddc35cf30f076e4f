"""Catalog queries: ranked, typo-tolerant product search with filters, relaxation and facets; product pages.

One interface on SQLite and PostgreSQL. The index behind it lives in `shop.search_index` (FTS5 /
tsvector, kept in sync by triggers and refreshed at the start of every search); this module turns
`SearchFilters` into one sanitised full-text query plus a few SQL conditions, runs it, and loads
the page of products.

    with session_scope() as session:
        result = search_with_relaxation(session, SearchFilters(category="sneakers", color="red",
                                                               size="42", price_max_cents=8000))
        result.products, result.total, result.relaxed   # e.g. [...], 3, ["size"]
        question = most_useful_question(filters, facets(session, filters))  # "size" | "color" | "budget" | None
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rapidfuzz import fuzz, process
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session, selectinload

from shop import search_index as index
from shop.models import Category, Product, Variant
from shop.search_text import STOPWORDS, color_family, key, phrase_key, stems, words

SORTS = ("relevance", "price_asc", "price_desc", "rating", "newest")
GENDERS = ("men", "women", "kids", "unisex")
MAX_QUERY_LENGTH = 200  # characters of free text looked at
MAX_TERMS = 8  # words of free text used
MAX_FILTER_LENGTH = 100
MAX_COLORS = 12
MAX_LIMIT = 100
MAX_OFFSET = 1_000_000
MAX_PRICE_CENTS = 100_000_000
FEW_RESULTS = 8  # at or below this many results the chat shows them instead of asking a question
TYPO_MIN_SCORE = 75.0  # rapidfuzz ratio (0-100) a correction must reach
NAME_MIN_SCORE = 80.0  # for brand, colour and category names

_GENDER_WORDS = {
    "men": "men", "man": "men", "mens": "men", "male": "men", "males": "men", "boy": "kids", "boys": "kids",
    "women": "women", "woman": "women", "womens": "women", "female": "women", "females": "women",
    "lady": "women", "ladies": "women", "girl": "kids", "girls": "kids",
    "kid": "kids", "kids": "kids", "child": "kids", "children": "kids", "childrens": "kids", "baby": "kids",
    "unisex": "unisex", "everyone": "unisex",
}
_GENDER_SCOPE = {"men": ("men", "unisex"), "women": ("women", "unisex"), "kids": ("kids",), "unisex": ("unisex",)}
_SIZE_ALIASES = {
    "extra small": "xs", "x small": "xs", "x-small": "xs", "small": "s", "medium": "m", "med": "m",
    "large": "l", "extra large": "xl", "x large": "xl", "x-large": "xl", "xx large": "xxl", "xx-large": "xxl",
    "2xl": "xxl", "extra extra large": "xxl", "one size": "one size", "onesize": "one size",
}
_COLOR_SYNONYMS = {"gray": "grey", "grey": "gray", "off white": "offwhite", "offwhite": "off white"}


# --------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProductSummary:
    handle: str
    title: str
    brand: str
    category: str
    price_cents: int
    compare_at_price_cents: Optional[int]
    colors: Tuple[str, ...]
    sizes: Tuple[str, ...]
    in_stock: bool
    rating: Optional[float]
    review_count: int
    image_url: str

    @property
    def url_path(self) -> str:
        return f"/products/{self.handle}"


@dataclass(frozen=True)
class SearchFilters:
    """What the shopper asked for. Every field is optional; bad values are cleaned, never raised on.

    category    a category name or a product type, singular or plural ("Shoes", "sneakers")
    color       exact colour, case-insensitive; with color_family=True any colour of its family
                ("navy" -> blue, navy, light blue ...); `colors` adds more accepted colours
    size        a variant size, case-insensitive ("XL", "42")
    brand       case-insensitive and typo-tolerant ("strde lab" -> Stride Lab)
    material    a substring of the product's material ("cotton" matches "organic cotton")
    gender      men / women / kids / unisex; men and women include unisex products
    price_*     on the price of a matching variant, in cents; swapped when min > max
    in_stock_only  only variants with stock count (the chat never offers what cannot be bought)
    sort        relevance (text rank; without text: cheapest first), price_asc, price_desc,
                rating (average, then number of reviews), newest
    """

    text: str = ""
    category: Optional[str] = None
    color: Optional[str] = None
    price_min_cents: Optional[int] = None
    price_max_cents: Optional[int] = None
    in_stock_only: bool = True
    limit: int = 5
    offset: int = 0
    size: Optional[str] = None
    brand: Optional[str] = None
    material: Optional[str] = None
    gender: Optional[str] = None
    colors: Tuple[str, ...] = ()
    color_family: bool = False
    sort: str = "relevance"


@dataclass
class SearchResult:
    products: List[ProductSummary]
    total: int
    filters: SearchFilters = field(default_factory=SearchFilters)
    relaxed: List[str] = field(default_factory=list)  # filters relaxed to find these, in the order relaxed
    corrections: Dict[str, str] = field(default_factory=dict)  # typo -> the catalog word searched instead


@dataclass(frozen=True)
class Facets:
    """How the products matching some filters spread over colours, sizes and prices."""

    total: int
    colors: List[Tuple[str, int]]  # (colour, products), most products first
    sizes: List[Tuple[str, int]]  # (size as the catalog spells it, products), most products first
    price_bands: List[Tuple[int, int]]  # (upper limit in cents, products at or under it), ascending


# --------------------------------------------------------------------------------------------
# Cleaning the input
# --------------------------------------------------------------------------------------------

def _clean_text(value, length: int = MAX_FILTER_LENGTH) -> Optional[str]:
    """Whitespace collapsed, cut to `length` characters at a word boundary (no half words)."""
    if value is None:
        return None
    value = str(value)[: length * 4]
    if not value.isprintable():  # control characters (NUL ...) are no part of any name
        value = "".join(c if c.isprintable() else " " for c in value)
    value = " ".join(value.split())
    if len(value) > length:
        cut = value[: length + 1]
        value = cut[: cut.rfind(" ")] if " " in cut else value[:length]
    return value.strip() or None


def _clean_price(value) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or number < 0:
        return None
    return int(min(round(number), MAX_PRICE_CENTS))


def _clean_int(value, low: int, high: int, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return max(low, min(high, number))


def clean_filters(filters: SearchFilters) -> SearchFilters:
    """The filters with absurd values made harmless: trimmed, truncated, swapped or dropped."""
    price_min, price_max = _clean_price(filters.price_min_cents), _clean_price(filters.price_max_cents)
    if price_min is not None and price_max is not None and price_min > price_max:
        price_min, price_max = price_max, price_min
    colors = filters.colors
    if isinstance(colors, str):
        colors = (colors,)
    try:
        colors = tuple(c for c in (_clean_text(c) for c in list(colors or ())[:MAX_COLORS]) if c)
    except TypeError:
        colors = ()
    return SearchFilters(
        text=_clean_text(filters.text, MAX_QUERY_LENGTH) or "",
        category=_clean_text(filters.category),
        color=_clean_text(filters.color),
        colors=colors,
        color_family=bool(filters.color_family),
        size=_clean_text(filters.size),
        brand=_clean_text(filters.brand),
        material=_clean_text(filters.material),
        gender=_clean_text(filters.gender),
        price_min_cents=price_min,
        price_max_cents=price_max,
        in_stock_only=bool(filters.in_stock_only),
        sort=filters.sort if filters.sort in SORTS else "relevance",
        limit=_clean_int(filters.limit, 0, MAX_LIMIT, 5),
        offset=_clean_int(filters.offset, 0, MAX_OFFSET, 0),
    )


# --------------------------------------------------------------------------------------------
# From filters to a query
# --------------------------------------------------------------------------------------------

def _best_match(term: str, choices: Dict[str, int], min_score: float) -> Optional[str]:
    """The closest choice: highest similarity, then same first letter, then most documents."""
    if not choices or not term:
        return None
    found = process.extract(term, list(choices), scorer=fuzz.ratio, score_cutoff=min_score, limit=10)
    if not found:
        return None
    best = max(found, key=lambda c: (round(c[1], 3), c[0][:1] == term[:1], choices[c[0]], -abs(len(c[0]) - len(term)),
                                     c[0]))
    return best[0]


def _query_terms(value: str) -> List[str]:
    """Stems of free text, without filler words (unless there is nothing else), at most MAX_TERMS."""
    all_terms = list(dict.fromkeys(stems(value[:MAX_QUERY_LENGTH])))
    kept = [t for t in all_terms if t not in STOPWORDS] or all_terms
    return kept[:MAX_TERMS]


def _correct_terms(terms: List[str], vocab: index.Vocabulary, corrections: Dict[str, str]) -> List[str]:
    """Each word the catalog does not know is replaced by the closest word it does know."""
    corrected = []
    for term in terms:
        if term in vocab.words or len(term) < 4 or not term.isalpha() or not vocab.words:
            corrected.append(term)
            continue
        best = _best_match(term, vocab.words, TYPO_MIN_SCORE)
        if best and best != term:
            corrections[term] = best
            corrected.append(best)
        else:
            corrected.append(term)
    return list(dict.fromkeys(corrected))


@dataclass
class _Plan:
    """A search, resolved against the catalog's vocabulary. Everything user-given is a bound value
    or a sanitised token ([0-9a-z] words only) by now."""

    filters: SearchFilters
    impossible: bool = False  # a filter names nothing in the catalog: no results
    text_terms: List[str] = field(default_factory=list)
    required_tokens: List[str] = field(default_factory=list)  # all of them
    token_groups: List[List[str]] = field(default_factory=list)  # at least one of each group
    category_tokens: List[str] = field(default_factory=list)  # one of these ...
    category_terms: List[str] = field(default_factory=list)  # ... or all these words (unknown category)
    exact_colors: Optional[List[str]] = None  # lower-case colour names a variant must have
    exact_size: Optional[str] = None
    exact_needed: bool = False  # the tokens are a superset: check variants exactly
    material_pattern: Optional[str] = None
    corrections: Dict[str, str] = field(default_factory=dict)

    @property
    def has_price(self) -> bool:
        return self.filters.price_min_cents is not None or self.filters.price_max_cents is not None

    @property
    def has_variant_filter(self) -> bool:
        return self.exact_colors is not None or self.exact_size is not None or self.has_price


def _resolve_category(value: str, vocab: index.Vocabulary, plan: _Plan) -> None:
    wanted = phrase_key(value)
    if not wanted:
        return

    def matching(name: str) -> Tuple[List[str], List[str]]:
        """Exact category / type names; failing those, types named by it as their last words
        ("shoes" -> "running shoes", "trail shoes"; but "sneakers" does not pull in "kids sneakers")."""
        types = [t for t in vocab.types if t == name]
        cats = [c for c in vocab.categories if c == name]
        if not types and not cats:
            types = [t for t in vocab.types if t.endswith(" " + name)]
            cats = [c for c in vocab.categories if c.endswith(" " + name)]
        return types, cats

    types, cats = matching(wanted)
    if not types and not cats and len(wanted) >= 4:
        names = {**vocab.categories, **vocab.types}
        corrected = _best_match(wanted, names, NAME_MIN_SCORE)
        if corrected:
            plan.corrections[wanted] = corrected
            types, cats = matching(corrected)
    tokens = [index.type_token(t) for t in types] + [index.category_token(c) for c in cats]
    # The exact spelling too, in case the catalog learnt it after the vocabulary was read.
    tokens += [index.type_token(wanted), index.category_token(wanted)]
    plan.category_tokens = list(dict.fromkeys(tokens))
    if not types and not cats:
        plan.category_terms = _correct_terms(_query_terms(value), vocab, plan.corrections)


def _resolve_colors(filters: SearchFilters, vocab: index.Vocabulary, plan: _Plan) -> Tuple[List[str], List[str]]:
    """(colour keys, family names) asked for; colour names the catalog lacks are corrected when close."""
    asked = [c for c in ([filters.color] if filters.color else []) + list(filters.colors)]
    keys = []
    for name in asked:
        wanted = index.color_key(name)
        if wanted and vocab.colors and wanted not in vocab.colors:
            synonym = _COLOR_SYNONYMS.get(wanted)
            if synonym in vocab.colors:
                wanted = synonym
            elif color_family(wanted) is None:
                corrected = _best_match(wanted, vocab.colors, NAME_MIN_SCORE)
                if corrected:
                    plan.corrections[wanted] = corrected
                    wanted = corrected
        if wanted:
            keys.append(wanted)
    keys = list(dict.fromkeys(keys))
    families = list(dict.fromkeys(index.family_of(k) for k in keys)) if filters.color_family else []
    return keys, families


def _resolve_size(value: str, vocab: index.Vocabulary) -> str:
    wanted = index.size_key(value)
    if wanted in vocab.sizes or not vocab.sizes:
        return wanted
    for candidate in (
        _SIZE_ALIASES.get(wanted),
        wanted[5:].strip() if wanted.startswith("size ") else None,
        wanted[3:].strip() if wanted.startswith(("eu ", "us ", "uk ")) else None,
    ):
        if candidate and candidate in vocab.sizes:
            return candidate
    return wanted


_BRAND_NAMES = text("SELECT name FROM brands")


def _resolve_brands(session: Session, value: str, plan: _Plan) -> List[str]:
    """Brand keys matching the asked name: exact, same words, a word subset, or the closest spelling."""
    wanted = key(value)
    names = {key(n): n for n in session.connection().execute(_BRAND_NAMES).scalars() if n}
    if wanted in names:
        return [wanted]
    wanted_words = words(value)
    same = [k for k in names if words(k) == wanted_words]
    if same:
        return same
    subset = [k for k in names if wanted_words and set(wanted_words) <= set(words(k))]
    if subset:
        return subset
    best = _best_match(wanted, dict.fromkeys(names, 1), NAME_MIN_SCORE)
    if best:
        plan.corrections[wanted] = best
        return [best]
    return []


def _gender_scope(value: str) -> Tuple[str, ...]:
    for word in words(value):
        canonical = _GENDER_WORDS.get(word)
        if canonical:
            return _GENDER_SCOPE[canonical]
    return ()


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _plan(session: Session, filters: SearchFilters, state: index.IndexState) -> _Plan:
    vocab = index.vocabulary(session, state)
    plan = _Plan(filters=filters)
    if filters.text:
        plan.text_terms = _correct_terms(_query_terms(filters.text), vocab, plan.corrections)
    if filters.category:
        _resolve_category(filters.category, vocab, plan)
    if filters.brand:
        brands = _resolve_brands(session, filters.brand, plan)
        if not brands:
            plan.impossible = True
        plan.token_groups.append([index.brand_token(b) for b in brands])
    if filters.gender:
        scope = _gender_scope(filters.gender)
        if scope:
            plan.token_groups.append([index.gender_token(g) for g in scope])
    if filters.material:
        plan.material_pattern = f"%{_escape_like(key(filters.material))}%"

    in_stock = filters.in_stock_only
    color_keys, families = _resolve_colors(filters, vocab, plan)
    size = _resolve_size(filters.size, vocab) if filters.size else None
    if color_keys:
        if families:
            plan.exact_colors = sorted({c for c in vocab.colors if index.family_of(c) in families} | set(color_keys))
        else:
            plan.exact_colors = color_keys
    plan.exact_size = size
    if color_keys and size is not None:
        if in_stock:
            plan.token_groups.append(
                [index.variant_token(True, family=f, size=size) for f in families]
                or [index.variant_token(True, color=c, size=size) for c in color_keys]
            )
        else:  # no colour-and-size tokens for out-of-stock variants: narrow, then check exactly
            plan.token_groups.append(
                [index.variant_token(False, family=f) for f in families]
                or [index.variant_token(False, color=c) for c in color_keys]
            )
            plan.required_tokens.append(index.variant_token(False, size=size))
            plan.exact_needed = True
    elif color_keys:
        plan.token_groups.append(
            [index.variant_token(in_stock, family=f) for f in families]
            or [index.variant_token(in_stock, color=c) for c in color_keys]
        )
    elif size is not None:
        plan.required_tokens.append(index.variant_token(in_stock, size=size))
    return plan


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------

def _quoted(terms: Sequence[str]) -> str:
    # Terms and tokens are [^\W_]+ words (see search_text.words and search_index tokens): no quote
    # or operator can reach the FTS5 query. The assertion keeps it that way.
    assert all(t and '"' not in t and t.replace(" ", "").isalnum() for t in terms), terms
    return " ".join(f'"{t}"' for t in terms)


def _fts_match(plan: _Plan) -> Optional[str]:
    """The FTS5 query, or None when nothing narrows the search down (then search_docs is read alone)."""
    category_columns = "{" + " ".join(index.CATEGORY_TEXT_COLUMNS) + "}"
    parts = []
    if plan.text_terms:
        # No column filter: words never equal the coded facet tokens, and FTS5 is faster without one.
        parts.append("(" + " AND ".join(_quoted([t]) for t in plan.text_terms) + ")")
    for token in plan.required_tokens:
        parts.append(f"facets : ({_quoted([token])})")
    for group in plan.token_groups:
        parts.append("facets : (" + " OR ".join(_quoted([t]) for t in group) + ")")
    if plan.category_tokens:
        category = "facets : (" + " OR ".join(_quoted([t]) for t in plan.category_tokens) + ")"
        if plan.category_terms:
            category = (f"({category} OR {category_columns} : ("
                        + " AND ".join(_quoted([t]) for t in plan.category_terms) + "))")
        parts.append(category)
    if not parts:
        return None
    excluded = index.NO_STOCK_TOKEN if plan.filters.in_stock_only else index.NO_VARIANT_TOKEN
    return "(" + " AND ".join(parts) + f") NOT facets : ({_quoted([excluded])})"


def _tsquery(terms: Sequence[str], weights: str = "") -> str:
    _quoted(terms)  # the same guarantee as for FTS5
    return " & ".join(f"'{t}'" + (f":{weights}" if weights else "") for t in terms)


@dataclass
class _Sql:
    source: str  # FROM ... (docs aliased d)
    where: List[str]
    params: Dict[str, object]
    rank: Optional[str]  # relevance expression, ascending = best first
    price: str  # the displayed price of a product
    count_source: Optional[str] = None  # a cheaper FROM/WHERE for counting, when one exists
    expanding: Tuple[str, ...] = ()


def _variant_conditions(plan: _Plan, params: Dict[str, object]) -> List[str]:
    f = plan.filters
    conditions = ["v.product_id = d.product_id"]
    if plan.exact_colors is not None:
        conditions.append("lower(trim(v.color)) IN :v_colors")
        params["v_colors"] = list(plan.exact_colors)
    if plan.exact_size is not None:
        conditions.append("lower(trim(v.size)) = :v_size")
        params["v_size"] = plan.exact_size
    if f.price_min_cents is not None:
        conditions.append("v.price_cents >= :pmin")
        params["pmin"] = f.price_min_cents
    if f.price_max_cents is not None:
        conditions.append("v.price_cents <= :pmax")
        params["pmax"] = f.price_max_cents
    if f.in_stock_only:
        conditions.append("v.stock > 0")
    return conditions


def _sql(plan: _Plan, dialect: str) -> _Sql:
    f = plan.filters
    params: Dict[str, object] = {}
    lo, hi = ("d.ilo", "d.ihi") if f.in_stock_only else ("d.alo", "d.ahi")
    variant_where = " AND ".join(_variant_conditions(plan, params))
    exact = f"EXISTS (SELECT 1 FROM variants v WHERE {variant_where})"
    where: List[str] = []
    doc_conditions: List[str] = []
    if f.price_max_cents is not None:
        doc_conditions.append(f"{lo} <= :pmax")
    if f.price_min_cents is not None:
        doc_conditions.append(f"{hi} >= :pmin")
    if plan.exact_needed:
        doc_conditions.append(exact)
    elif plan.has_price:
        doc_conditions.append(f"({lo} = {hi} OR {exact})")
    if plan.material_pattern:
        doc_conditions.append("d.material_key LIKE :material ESCAPE '\\'")
        params["material"] = plan.material_pattern
    if plan.has_variant_filter:
        price = f"CASE WHEN {lo} = {hi} THEN {lo} ELSE (SELECT min(v.price_cents) FROM variants v WHERE {variant_where}) END"
    else:
        price = lo
    expanding = ("v_colors",) if plan.exact_colors is not None else ()

    has_stock = f"{lo} IS NOT NULL"  # (in stock) variants exist
    if dialect == "sqlite":
        match = _fts_match(plan)
        if match is None:
            return _Sql("search_docs d", [has_stock] + doc_conditions, params, None, price, None, expanding)
        params["match"] = match
        source = "search_fts CROSS JOIN search_docs d ON d.product_id = search_fts.rowid"
        where = ["search_fts MATCH :match"] + doc_conditions
        weights = ", ".join(str(w) for w in index.BM25_WEIGHTS)
        rank = f"bm25(search_fts, {weights})" if plan.text_terms else None
        # Without conditions on search_docs the full-text index counts alone (and fast).
        count_source = None if doc_conditions else "search_fts WHERE search_fts MATCH :match"
        return _Sql(source, where, params, rank, price, count_source, expanding)

    # PostgreSQL: facet tokens in a text[] (GIN), text in a weighted tsvector (GIN).
    if plan.required_tokens:
        where.append("d.facets @> CAST(:required AS text[])")
        params["required"] = list(plan.required_tokens)
    for number, group in enumerate(plan.token_groups):
        where.append(f"d.facets && CAST(:group{number} AS text[])")
        params[f"group{number}"] = list(group)
    if plan.category_tokens:
        category = "d.facets && CAST(:category AS text[])"
        params["category"] = list(plan.category_tokens)
        if plan.category_terms:
            category = f"({category} OR d.document @@ to_tsquery('simple', :category_query))"
            params["category_query"] = _tsquery(plan.category_terms, "ABC")
        where.append(category)
    rank = None
    if plan.text_terms:
        where.append("d.document @@ to_tsquery('simple', :query)")
        params["query"] = _tsquery(plan.text_terms)
        rank = "-ts_rank(d.document, to_tsquery('simple', :query))"
    return _Sql("search_docs d", where + [has_stock] + doc_conditions, params, rank, price, None, expanding)


def _order_by(plan: _Plan, sql: _Sql) -> str:
    sort = plan.filters.sort
    if sort == "relevance":
        if sql.rank:
            return "relevance, product_id"
        sort = "price_asc"
    return {
        "price_asc": "price ASC, product_id",
        "price_desc": "price DESC, product_id",
        "rating": "rating_avg DESC NULLS LAST, review_count DESC, product_id",
        "newest": "created_at DESC, product_id DESC",
    }[sort]


def _statement(sql_text: str, sql: _Sql):
    statement = text(sql_text)
    expanding = [name for name in sql.expanding if f":{name}" in sql_text]
    if expanding:
        statement = statement.bindparams(*(bindparam(name, expanding=True) for name in expanding))
    return statement


def _count(session: Session, sql: _Sql) -> int:
    if sql.count_source:
        query = f"SELECT count(*) FROM {sql.count_source}"
    else:
        query = f"SELECT count(*) FROM {sql.source} WHERE {' AND '.join(sql.where)}"
    return int(session.connection().execute(_statement(query, sql), sql.params).scalar_one())


_SORT_COLUMNS = {
    "rating": "d.rating_avg AS rating_avg, d.review_count AS review_count",
    "newest": "d.created_at AS created_at",
}


def _page(session: Session, plan: _Plan, sql: _Sql, with_total: bool) -> Tuple[List[int], Optional[int]]:
    """The product ids of the page; with_total also counts all matches in the same pass."""
    params = dict(sql.params, limit=plan.filters.limit, offset=plan.filters.offset)
    if sql.rank and sql.count_source and plan.filters.sort == "relevance":
        # Ranked by the full-text index alone: no need to read search_docs for every match.
        query = (f"SELECT search_fts.rowid FROM {sql.count_source} "
                 f"ORDER BY {sql.rank}, search_fts.rowid LIMIT :limit OFFSET :offset")
        return [int(r[0]) for r in session.connection().execute(_statement(query, sql), params)], None
    columns = ["d.product_id AS product_id", f"{sql.price} AS price"]
    if plan.filters.sort in _SORT_COLUMNS:
        columns.append(_SORT_COLUMNS[plan.filters.sort])
    if sql.rank:
        columns.append(f"{sql.rank} AS relevance")
    query = f"SELECT {', '.join(columns)} FROM {sql.source} WHERE {' AND '.join(sql.where)}"
    order = _order_by(plan, sql)
    if with_total:
        # bm25() only works at the level of the full-text scan: rank inside, count and order outside.
        query = (f"SELECT product_id, price, count(*) OVER () AS total FROM ({query}) AS matches "
                 f"ORDER BY {order} LIMIT :limit OFFSET :offset")
    else:
        query += f" ORDER BY {order} LIMIT :limit OFFSET :offset"
    rows = session.connection().execute(_statement(query, sql), params).all()
    total = int(rows[0][2]) if with_total and rows else None
    return [int(r[0]) for r in rows], total


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------

def _prepare(session: Session) -> index.IndexState:
    session.flush()  # pending ORM changes reach the triggers first
    state = index.prepare_search(session)
    if state is None:
        # No shop schema: let the database say so in its own words (an SQLAlchemyError).
        session.execute(select(Product.id).limit(1))
        raise RuntimeError("the shop database has no products table")
    return state


def search_products(session: Session, filters: SearchFilters) -> SearchResult:
    """Products matching every given filter, best first; `total` counts all matches."""
    filters = clean_filters(filters)
    state = _prepare(session)
    plan = _plan(session, filters, state)
    if plan.impossible:
        return SearchResult([], 0, filters, corrections=plan.corrections)
    sql = _sql(plan, state.dialect)
    if sql.count_source or not filters.limit:  # counting alone is cheap: the full-text index answers it
        total = _count(session, sql)
        ids = _page(session, plan, sql, with_total=False)[0] if total > filters.offset and filters.limit else []
    else:
        ids, total = _page(session, plan, sql, with_total=True)
        if total is None:  # an empty page says nothing about how many there are
            total = _count(session, sql) if filters.offset else 0
    products = summaries_for(session, ids, _variant_predicate(plan))
    return SearchResult(products, total, filters, corrections=plan.corrections)


def _variant_predicate(plan: _Plan) -> Callable[[Variant], bool]:
    f = plan.filters
    colors = set(plan.exact_colors) if plan.exact_colors is not None else None

    def fits(v: Variant) -> bool:
        if colors is not None and (v.color or "").strip().lower() not in colors:
            return False
        if plan.exact_size is not None and (v.size or "").strip().lower() != plan.exact_size:
            return False
        if f.price_min_cents is not None and v.price_cents < f.price_min_cents:
            return False
        if f.price_max_cents is not None and v.price_cents > f.price_max_cents:
            return False
        if f.in_stock_only and v.stock <= 0:
            return False
        return True

    return fits


def _widened(filters: SearchFilters) -> Optional[SearchFilters]:
    if filters.price_min_cents is None and filters.price_max_cents is None:
        return None
    return replace(
        filters,
        price_min_cents=None if filters.price_min_cents is None else int(filters.price_min_cents * 0.75),
        price_max_cents=None if filters.price_max_cents is None else int(math.ceil(filters.price_max_cents * 1.25)),
    )


# Relaxation steps, in order: (name in SearchResult.relaxed, filters -> relaxed filters or None if not applicable)
RELAXATION_STEPS: Tuple[Tuple[str, Callable[[SearchFilters], Optional[SearchFilters]]], ...] = (
    ("color", lambda f: replace(f, color_family=True)
     if (f.color or f.colors) and not f.color_family
     and any(color_family(c) for c in ([f.color] if f.color else []) + list(f.colors))
     else None),
    ("size", lambda f: replace(f, size=None) if f.size else None),
    ("brand", lambda f: replace(f, brand=None) if f.brand else None),
    ("material", lambda f: replace(f, material=None) if f.material else None),
    ("price_widened", _widened),
    ("price", lambda f: replace(f, price_min_cents=None, price_max_cents=None)
     if f.price_min_cents is not None or f.price_max_cents is not None else None),
    ("gender", lambda f: replace(f, gender=None) if f.gender else None),
    # Last resort: any colour ("purple sneakers" -> the sneakers there are).
    ("color", lambda f: replace(f, color=None, colors=(), color_family=False) if f.color or f.colors else None),
)


def search_with_relaxation(session: Session, filters: SearchFilters) -> SearchResult:
    """Like search_products, but when nothing matches, relax filters until something does.

    First each filter alone, in RELAXATION_STEPS order (colour family instead of the exact
    colour, then size, brand, material, the budget widened by 25%, the budget dropped, gender,
    and at last any colour), so that the answer stays as close as possible to the request; then
    cumulatively in the same order. `relaxed` names what was relaxed, each name once: "color",
    "size", "brand", "material", "price_widened", "price", "gender" (empty when the strict search
    found something, or when nothing helps: the text or the kind of product is not in the catalog).
    """
    filters = clean_filters(filters)
    strict = search_products(session, filters)
    if strict.total:
        return strict
    steps = [(name, step) for name, step in RELAXATION_STEPS if step(filters) is not None]
    for name, step in steps:
        result = search_products(session, step(filters))
        if result.total:
            result.relaxed = [name]
            return result
    relaxed, names = filters, []
    for name, step in steps:
        changed = step(relaxed)
        if changed is None:
            continue
        relaxed = changed
        names = [n for n in names if not (name == "price" and n == "price_widened")]
        names += [name] if name not in names else []
        if len(names) < 2:
            continue
        result = search_products(session, relaxed)
        if result.total:
            result.relaxed = names
            return result
    return strict


# --------------------------------------------------------------------------------------------
# Facets and the most useful question
# --------------------------------------------------------------------------------------------

PRICE_LADDER_CENTS = (
    500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 7500, 10000, 12500, 15000, 20000, 25000, 30000,
    40000, 50000, 75000, 100000, 150000, 200000, 300000, 500000, 1000000,
)


def _price_bands(prices: Sequence[int]) -> List[Tuple[int, int]]:
    """Round 'under $X' limits that split the prices at about 20/40/60/80 %."""
    prices = sorted(p for p in prices if p is not None)
    if len(prices) < 2:
        return []
    import bisect

    counts = {limit: bisect.bisect_right(prices, limit) for limit in PRICE_LADDER_CENTS}
    bands: Dict[int, int] = {}
    for target in (0.2, 0.4, 0.6, 0.8):
        useful = [(abs(n / len(prices) - target), limit) for limit, n in counts.items() if 0 < n < len(prices)]
        if useful:
            limit = min(useful)[1]
            bands[limit] = counts[limit]
    return sorted(bands.items())


def facets(session: Session, filters: SearchFilters) -> Facets:
    """Counts of matching products by colour, size and price band (over all matches, not a page).

    A product counts for a colour (size) when one of its variants that fits every other filter has
    that colour (size); its price is that of its cheapest fitting variant. One pass over the
    matching documents, whose variants the index keeps in compact form: no variant rows are read.
    """
    filters = clean_filters(filters)
    state = _prepare(session)
    plan = _plan(session, filters, state)
    if plan.impossible:
        return Facets(0, [], [], [])
    sql = _sql(plan, state.dialect)
    lo, hi = ("d.ilo", "d.ihi") if filters.in_stock_only else ("d.alo", "d.ahi")
    query = (f"SELECT {lo}, {hi}, d.stock_colors, d.stock_sizes, d.variants FROM {sql.source} "
             f"WHERE {' AND '.join(sql.where)}")
    colors = set(plan.exact_colors) if plan.exact_colors is not None else None
    has_price = plan.has_price
    low = filters.price_min_cents if filters.price_min_cents is not None else -1
    high = filters.price_max_cents if filters.price_max_cents is not None else MAX_PRICE_CENTS + 1
    # Without colour or size filters, an in-stock product whose in-stock variants share one price
    # (so that price is in range: it matched) adds all its in-stock colours and sizes: no decoding.
    shortcut = filters.in_stock_only and colors is None and plan.exact_size is None
    color_counts: Counter = Counter()  # colour key -> products
    size_counts: Counter = Counter()  # size as spelled -> products (merged by key below)
    prices: List[int] = []
    split = index.split_field
    for price_lo, price_hi, stock_colors, stock_sizes, encoded in session.connection().execute(
        _statement(query, sql), sql.params
    ).all():
        if shortcut and (not has_price or price_lo == price_hi):
            color_counts.update(split(stock_colors))
            size_counts.update(split(stock_sizes))
            prices.append(price_lo)
            continue
        seen_colors, seen_sizes, cheapest = set(), {}, None
        for color, size, price, in_stock in index.decode_variants(encoded):
            if (filters.in_stock_only and not in_stock) or not low <= price <= high:
                continue
            color_key = index.color_key(color) if color else ""
            if colors is not None and color_key not in colors:
                continue
            if plan.exact_size is not None and (index.size_key(size) if size else "") != plan.exact_size:
                continue
            if color_key:
                seen_colors.add(color_key)
            if size:
                seen_sizes.setdefault(index.size_key(size), size)
            cheapest = price if cheapest is None or price < cheapest else cheapest
        if cheapest is None:
            continue  # (cannot happen for a match; kept for safety)
        color_counts.update(seen_colors)
        size_counts.update(seen_sizes.values())
        prices.append(cheapest)
    total = len(prices)
    merged: Dict[str, List] = {}  # size key -> [first spelling, products]
    for size, n in sorted(size_counts.items()):
        entry = merged.setdefault(index.size_key(size), [size, 0])
        entry[1] += n
    color_list = sorted(color_counts.items(), key=lambda x: (-x[1], x[0]))
    size_list = sorted(((spelling, n) for spelling, n in merged.values()), key=lambda x: (-x[1], _size_order(x[0])))
    return Facets(total, color_list, size_list, _price_bands(prices))


_CLOTHING_ORDER = ("xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl")


def _size_order(size: str) -> Tuple[int, float, str]:
    lowered = size.strip().lower()
    if lowered in _CLOTHING_ORDER:
        return (0, float(_CLOTHING_ORDER.index(lowered)), lowered)
    digits = "".join(c if c.isdigit() or c == "." else " " for c in lowered).split()
    if digits:
        try:
            return (1, float(digits[0]), lowered)
        except ValueError:
            pass
    return (2, 0.0, lowered)


def _remaining_share(counts: Sequence[int], total: int) -> float:
    """Expected share of the results left after the shopper picks one value (lower splits better)."""
    counts = [n for n in counts if n > 0]
    if len(counts) < 2 or total <= 0:
        return 1.0
    return sum(n * n for n in counts) / sum(counts) / total


def most_useful_question(filters: SearchFilters, facet_counts: Facets) -> Optional[str]:
    """"size", "color" or "budget": the unset filter whose answer narrows the results most;
    None when the results are few (<= FEW_RESULTS) or no question would split them."""
    if facet_counts is None or facet_counts.total <= FEW_RESULTS:
        return None
    options: List[Tuple[float, int, str]] = []
    total = facet_counts.total
    if not filters.size:
        options.append((_remaining_share([n for _, n in facet_counts.sizes], total), 0, "size"))
    if not filters.color and not filters.colors:
        options.append((_remaining_share([n for _, n in facet_counts.colors], total), 1, "color"))
    if filters.price_min_cents is None and filters.price_max_cents is None and facet_counts.price_bands:
        cumulative = [n for _, n in facet_counts.price_bands]
        bins = [b - a for a, b in zip([0] + cumulative, cumulative + [total])]
        options.append((_remaining_share(bins, total), 2, "budget"))
    useful = [o for o in options if o[0] < 0.8]
    return min(useful)[2] if useful else None


# --------------------------------------------------------------------------------------------
# Summaries, product pages, home page
# --------------------------------------------------------------------------------------------

_SUMMARY_PRODUCTS = text(
    "SELECT p.id AS id, p.handle AS handle, p.title AS title, p.image_url AS image_url, b.name AS brand, "
    "c.name AS category, (SELECT avg(r.rating) FROM reviews r WHERE r.product_id = p.id) AS rating_avg, "
    "(SELECT count(*) FROM reviews r WHERE r.product_id = p.id) AS rating_count "
    "FROM products p LEFT JOIN brands b ON b.id = p.brand_id LEFT JOIN categories c ON c.id = p.category_id "
    "WHERE p.id IN :ids"
).bindparams(bindparam("ids", expanding=True))
_SUMMARY_VARIANTS = text(
    "SELECT product_id, id, color, size, price_cents, compare_at_price_cents, stock FROM variants "
    "WHERE product_id IN :ids ORDER BY product_id, id"
).bindparams(bindparam("ids", expanding=True))


def summaries_for(
    session: Session, ids: Sequence[int], fits: Optional[Callable[[Variant], bool]] = None
) -> List[ProductSummary]:
    """A ProductSummary per product id, in the order given (unknown ids and products without variants
    are left out). With `fits` (a predicate on variants: color, size, price_cents, stock), the price
    shown is that of the cheapest variant that fits."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if not ids:
        return []
    conn = session.connection()
    products = {row.id: row for row in conn.execute(_SUMMARY_PRODUCTS, {"ids": ids})}
    variants: Dict[int, list] = {}
    for v in conn.execute(_SUMMARY_VARIANTS, {"ids": ids}):
        variants.setdefault(v.product_id, []).append(v)
    summaries = []
    for pid in ids:
        product = products.get(pid)
        if product is None or pid not in variants:
            continue
        rating = (round(float(product.rating_avg), 1), int(product.rating_count)) if product.rating_count else None
        summaries.append(_summarise(product, variants[pid], rating, fits))
    return summaries


def summaries_for_handles(session: Session, handles: Sequence[str]) -> List[ProductSummary]:
    """ProductSummary per handle, in the order given; unknown handles are left out."""
    handles = [str(h)[:200] for h in handles if h][:MAX_LIMIT]
    if not handles:
        return []
    by_handle = dict(session.execute(select(Product.handle, Product.id).where(Product.handle.in_(handles))).all())
    return summaries_for(session, [by_handle[h] for h in handles if h in by_handle])


def _summarise(product, variants: Sequence, rating: Optional[tuple],
               fits: Optional[Callable[[Variant], bool]]) -> ProductSummary:
    shown = [v for v in variants if fits(v)] if fits else variants
    cheapest = min(shown or variants, key=lambda v: (v.price_cents, v.id))
    return ProductSummary(
        handle=product.handle,
        title=product.title,
        brand=product.brand or "",
        category=product.category or "",
        price_cents=cheapest.price_cents,
        compare_at_price_cents=cheapest.compare_at_price_cents,
        colors=tuple(dict.fromkeys(v.color for v in variants if v.color)),
        sizes=tuple(dict.fromkeys(v.size for v in variants if v.size)),
        in_stock=any(v.stock > 0 for v in variants),
        rating=rating[0] if rating else None,
        review_count=rating[1] if rating else 0,
        image_url=product.image_url,
    )


def get_product(session: Session, handle: str) -> Optional[Product]:
    """The product with its variants, brand, category and reviews loaded, or None."""
    return session.execute(
        select(Product)
        .where(Product.handle == str(handle)[:200])
        .options(
            selectinload(Product.variants),
            selectinload(Product.brand),
            selectinload(Product.category),
            selectinload(Product.reviews),
        )
    ).scalar_one_or_none()


def featured_products(session: Session, limit: int = 12) -> List[ProductSummary]:
    """The most-reviewed published products that have variants, for the shop's home page."""
    _prepare(session)
    ids = session.connection().execute(
        text("SELECT product_id FROM search_docs WHERE alo IS NOT NULL "
             "ORDER BY review_count DESC, product_id LIMIT :limit"),
        {"limit": _clean_int(limit, 0, MAX_LIMIT, 12)},
    ).scalars().all()
    return summaries_for(session, ids)


def category_names(session: Session) -> List[str]:
    return list(session.execute(select(Category.name).order_by(Category.name)).scalars())


def format_price(cents: int, currency_symbol: str = "$") -> str:
    return f"{currency_symbol}{cents // 100:,}.{cents % 100:02d}"
