"""`python -m shop bench-search`: the catalog search engine against a naive LIKE scan.

A fixed, seeded mix of the searches a chat produces (kind of product + colour + budget, a word
plus those, brand + size, misspelt words, best rated first) runs through `search_products` and,
for comparison, through a naive scan that does what a first version of a shop usually does:
`lower(column) LIKE '%word%'` over products joined to their variants, no index. Both return the
same kind of answer (total, first page of summaries) from one open session each, and each query
is timed end to end (wall clock, and CPU time of this process): first the whole mix through the
engine, then the whole mix through the scan. The 1-minute load average is printed with the
results, because on a shared machine it decides how far wall-clock times can be trusted.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shop.catalog import SearchFilters, _clean_text, clean_filters, search_products, summaries_for
from shop.db import session_scope
from shop.models import Brand, Category, Product, Review, Variant
from shop.search_index import ensure_search_index
from shop.search_text import STOPWORDS, number_forms, stem, words

LARGE_CATALOG = 100_000
DEFAULT_QUERIES = 100
DEFAULT_SEED = 7
# (kind, weight): how often each kind of search appears in the mix.
KINDS = (
    ("category+colour+budget", 4),
    ("text+category+colour+budget", 2),
    ("brand+size", 2),
    ("typo", 2),
    ("best rated", 1),
    ("colour family+size", 1),
)
BUDGETS_CENTS = (3000, 4000, 5000, 6000, 8000, 10000, 15000, 20000)


class BenchError(RuntimeError):
    """The database cannot be benchmarked as asked (e.g. too small)."""


@dataclass
class Timings:
    engine: List[float] = field(default_factory=list)  # wall-clock milliseconds
    naive: List[float] = field(default_factory=list)
    engine_cpu: List[float] = field(default_factory=list)  # CPU milliseconds of this process
    naive_cpu: List[float] = field(default_factory=list)


@dataclass
class BenchReport:
    products: int
    queries: int
    seed: int
    overall: Timings
    by_kind: Dict[str, Timings]
    same_totals: int = 0  # queries (without typos) where both agree on the number of matches
    comparable: int = 0
    dialect: str = "sqlite"
    load: Tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    @staticmethod
    def percentile(values: Sequence[float], q: float) -> float:
        ordered = sorted(values)
        if not ordered:
            return float("nan")
        position = (len(ordered) - 1) * q
        low, high = int(position), min(int(position) + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def speedup(self) -> float:
        engine = self.percentile(self.overall.engine, 0.5)
        return self.percentile(self.overall.naive, 0.5) / engine if engine else float("inf")

    def lines(self) -> List[str]:
        p = self.percentile
        out = [
            f"{'':34}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}",
            f"{'engine (search_products)':34}{p(self.overall.engine, .5):>10.2f}{p(self.overall.engine, .99):>10.2f}"
            f"{statistics.fmean(self.overall.engine):>10.2f}",
            f"{'naive LIKE scan':34}{p(self.overall.naive, .5):>10.2f}{p(self.overall.naive, .99):>10.2f}"
            f"{statistics.fmean(self.overall.naive):>10.2f}",
            f"speed-up at p50: {self.speedup():.0f}x "
            f"(p99: {p(self.overall.naive, .99) / max(p(self.overall.engine, .99), 1e-9):.0f}x)",
            f"CPU time of this process, p50: engine {p(self.overall.engine_cpu, .5):.2f} ms, naive "
            f"{p(self.overall.naive_cpu, .5):.2f} ms"
            + (" (the database server's CPU is not counted)" if self.dialect != "sqlite" else
               " (SQLite runs in this process: the time without waiting for a busy CPU)"),
            f"load average (1 min) before / after: {self.load[0]:.2f} / {self.load[1]:.2f} "
            f"on {os.cpu_count()} CPUs",
            "by kind (p50 ms engine / naive, queries):",
        ]
        for kind, timings in self.by_kind.items():
            out.append(f"  {kind:32}{p(timings.engine, .5):>8.2f} /{p(timings.naive, .5):>9.2f}   {len(timings.engine):>4}")
        if self.comparable:
            out.append(f"same total as the naive scan in {self.same_totals} of {self.comparable} queries without typos "
                       "(the scan also matches inside words: 'men' in 'women')")
        return out


# --------------------------------------------------------------------------------------------
# The query mix
# --------------------------------------------------------------------------------------------

def _typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard in a word of 5+ letters: a letter dropped, doubled or two swapped."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("drop", "double", "swap"))
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]


def query_mix(session: Session, count: int, seed: int) -> List[Tuple[str, SearchFilters]]:
    """`count` searches drawn with `seed` from the catalog's own types, colours, brands and sizes."""
    rng = random.Random(seed)
    published = Product.published.is_(True)
    types = session.execute(
        select(Product.product_type, func.count()).where(published, Product.product_type != "")
        .group_by(Product.product_type).order_by(Product.product_type)
    ).all()
    if not types:
        raise BenchError("the catalog has no products to search")
    type_names = [t for t, _ in types]
    type_weights = [n for _, n in types]
    # One sample product per type gives realistic colours, sizes, brands and words for it.
    samples: Dict[str, List[tuple]] = {}
    for type_name in type_names:
        rows = session.execute(
            select(Product.id, Product.title, Product.material, Brand.name, Category.name)
            .outerjoin(Brand, Brand.id == Product.brand_id).outerjoin(Category, Category.id == Product.category_id)
            .where(published, Product.product_type == type_name).order_by(Product.id).limit(40)
        ).all()
        samples[type_name] = rows
    kinds = [k for k, _ in KINDS]
    kind_weights = [w for _, w in KINDS]
    mix = []
    for _ in range(count):
        kind = rng.choices(kinds, kind_weights)[0]
        type_name = rng.choices(type_names, type_weights)[0]
        pid, title, material, brand, category = rng.choice(samples[type_name])
        variants = session.execute(
            select(Variant.color, Variant.size).where(Variant.product_id == pid).order_by(Variant.id)
        ).all()
        color, size = rng.choice(variants) if variants else ("", "")
        category_word = max(number_forms(type_name), key=len)  # the plural, as a shopper says it
        budget = rng.choice(BUDGETS_CENTS)
        if kind == "category+colour+budget":
            filters = SearchFilters(category=category_word, color=color or None, price_max_cents=budget)
        elif kind == "text+category+colour+budget":
            word = next((w for w in words(material or "") + words(title) if w not in STOPWORDS and len(w) > 3),
                        words(title)[0] if words(title) else "")
            filters = SearchFilters(text=word, category=category_word, color=color or None, price_max_cents=budget)
        elif kind == "brand+size":
            filters = SearchFilters(brand=brand, size=size or None)
        elif kind == "typo":
            text = " ".join(_typo(w, rng) for w in (material or "").split()[-1:] + type_name.lower().split())
            filters = SearchFilters(text=text)
        elif kind == "best rated":
            filters = SearchFilters(category=rng.choice([category_word, category or category_word]),
                                    color=color or None, sort="rating")
        else:
            filters = SearchFilters(category=category_word, color=color or None, color_family=True, size=size or None)
        mix.append((kind, filters))
    return mix


# --------------------------------------------------------------------------------------------
# The naive scan
# --------------------------------------------------------------------------------------------

def _like(column, word: str):
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


def naive_search(session: Session, filters: SearchFilters) -> Tuple[list, int]:
    """The same search without the index: LIKE on every text column, variants joined, grouped."""
    f = clean_filters(filters)
    product_conditions = [Product.published.is_(True)]
    text_columns = (Product.title, Product.product_type, Product.tags, Product.description, Category.name, Brand.name)
    for text_value in (f.text, f.category):
        for word in [stem(w) for w in words(text_value or "") if w not in STOPWORDS][:8]:
            product_conditions.append(or_(*(_like(c, word) for c in text_columns)))
    if f.brand:
        product_conditions.append(func.lower(Brand.name) == f.brand.lower())
    if f.material:
        product_conditions.append(_like(Product.material, f.material.lower()))
    if f.gender:
        product_conditions.append(Product.gender.in_({"men": ["men", "unisex"], "women": ["women", "unisex"]}
                                                     .get(f.gender.lower(), [f.gender.lower()])))
    variant_conditions = []
    colors = [c.lower() for c in ([f.color] if f.color else []) + list(f.colors)]
    if colors:
        variant_conditions.append(func.lower(Variant.color).in_(colors))
    if f.size:
        variant_conditions.append(func.lower(Variant.size) == f.size.lower())
    if f.price_min_cents is not None:
        variant_conditions.append(Variant.price_cents >= f.price_min_cents)
    if f.price_max_cents is not None:
        variant_conditions.append(Variant.price_cents <= f.price_max_cents)
    if f.in_stock_only:
        variant_conditions.append(Variant.stock > 0)
    price = func.min(Variant.price_cents).label("price")
    matching = (
        select(Product.id.label("product_id"), price)
        .join(Variant, Variant.product_id == Product.id)
        .outerjoin(Category, Category.id == Product.category_id)
        .outerjoin(Brand, Brand.id == Product.brand_id)
        .where(and_(*product_conditions, *variant_conditions))
        .group_by(Product.id)
        .subquery()
    )
    total = session.execute(select(func.count()).select_from(matching)).scalar_one()
    page = select(matching.c.product_id)
    if f.sort == "rating":
        ratings = (select(Review.product_id, func.avg(Review.rating).label("avg"), func.count().label("n"))
                   .group_by(Review.product_id).subquery())
        page = (page.outerjoin(ratings, ratings.c.product_id == matching.c.product_id)
                .order_by(func.coalesce(ratings.c.avg, 0).desc(), func.coalesce(ratings.c.n, 0).desc(),
                          matching.c.product_id))
    elif f.sort == "price_desc":
        page = page.order_by(matching.c.price.desc(), matching.c.product_id)
    else:
        page = page.order_by(matching.c.price, matching.c.product_id)
    ids = session.execute(page.limit(f.limit).offset(f.offset)).scalars().all()
    return summaries_for(session, ids), total


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------

def catalog_size(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count(Product.id))).scalar_one()


def run_benchmark(engine: Engine, queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED,
                  min_products: int = LARGE_CATALOG, progress: bool = True) -> BenchReport:
    """Time `queries` searches through the engine and the naive scan. Raises BenchError when the
    catalog has fewer than `min_products` products."""
    from tqdm import tqdm

    products = catalog_size(engine)
    if products < min_products:
        raise BenchError(
            f"the catalog has {products:,} products; the benchmark needs {min_products:,}. "
            "Run `python -m shop seed --reset --size large` first (same --database-url)"
        )
    ensure_search_index(engine, progress=progress)  # a build or refresh is not part of any timing
    with session_scope(engine) as session:
        mix = query_mix(session, max(1, queries), seed)
    overall, by_kind = Timings(), {k: Timings() for k, _ in KINDS}
    totals: Dict[str, List[int]] = {"engine": [], "naive": []}
    load_before = _load()
    with tqdm(total=2 * len(mix), desc="searching", unit="query", disable=not progress, leave=False,
              dynamic_ncols=True) as bar:
        # One phase each, as a server would run them: the engine's pages stay warm in its phase, and
        # the naive scan's reads of the whole catalog do not push them out between two searches.
        for name, run in (("engine", search_products), ("naive", naive_search)):
            with session_scope(engine) as session:
                for _, filters in mix[:5]:  # warm-up, not timed
                    run(session, filters)
                for kind, filters in mix:
                    started, cpu = time.perf_counter(), time.process_time()
                    result = run(session, filters)
                    wall_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
                    totals[name].append(result.total if name == "engine" else result[1])
                    for timings in (overall, by_kind[kind]):
                        getattr(timings, name).append(wall_ms)
                        getattr(timings, f"{name}_cpu").append(cpu_ms)
                    bar.update(1)
    same = comparable = 0
    for (kind, filters), engine_total, naive_total in zip(mix, totals["engine"], totals["naive"]):
        if kind != "typo" and not filters.color_family:
            comparable += 1
            same += int(engine_total == naive_total)
    return BenchReport(products, len(mix), seed, overall, {k: t for k, t in by_kind.items() if t.engine},
                       same, comparable, engine.dialect.name, (load_before, _load()))


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def describe(filters: SearchFilters) -> str:
    """A short description of a search for logs: only the fields that are set."""
    defaults = SearchFilters()
    parts = [f"{name}={getattr(filters, name)!r}" for name in filters.__dataclass_fields__
             if getattr(filters, name) != getattr(defaults, name)]
    return _clean_text(", ".join(parts), 200) or "(everything)"
