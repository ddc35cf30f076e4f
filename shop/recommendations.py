"""Cross-sell and guided recommendations built from the shop's real data.

- frequently_bought_together: co-occurrence in real orders (one SQL self-join on order_items).
- better_alternative: a clearly better-rated (or premium) product of the same type.
- gift_picks: a gift quiz (recipient, occasion, style, budget) -> 3-5 diverse, reasoned picks.
- personalised_picks: a returning customer's history and stored preferences -> reasoned picks.
- update_preferences: remember sizes and liked / disliked colours on the customer.

Every pick carries a one-sentence reason made only of facts found in the data.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from shop.catalog import ProductSummary
from shop.models import Category, Customer, Order, OrderItem, Product, Review, Variant
from shop.products import CLOTHING_SIZE_ORDER, normalise_color, normalise_size, size_sort_key
from shop.settings import shop_settings

MIN_REVIEWS_FOR_ALTERNATIVE = 3
ALTERNATIVE_MIN_GAIN = 0.3
UNRATED_ALTERNATIVE_MIN_RATING = 4.0
GIFT_MIN_RATING = 3.5  # a product rated below this is never suggested as a gift or a personal pick
MIN_GIFT_PICKS = 3  # below this many, quiz answers are relaxed (style first, then occasion)
CANDIDATES_PER_TYPE = 8  # personal picks: products of one type looked at before moving on
MAX_PERSONAL_CANDIDATES = 240
FIRST_RANKING_CHUNK = 500  # best-reviewed products tried before scoring every matching product


@dataclass(frozen=True)
class Pick:
    """One recommended product and why, in one sentence of real facts."""
    product: ProductSummary
    reason: str
    relaxed: Tuple[str, ...] = ()  # quiz answers set aside to find this pick: "style", "occasion"

    @property
    def handle(self) -> str:
        return self.product.handle

    @property
    def title(self) -> str:
        return self.product.title


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _money(cents: int) -> str:
    symbol = shop_settings().currency_symbol
    if cents % 100 == 0:
        return f"{symbol}{cents // 100:,}"
    return f"{symbol}{cents // 100:,}.{cents % 100:02d}"


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column, term: str):
    return func.lower(column).like(f"%{_escape_like(term.lower())}%", escape="\\")


def _reviews_phrase(rating: Optional[float], count: int) -> str:
    if not count or rating is None:
        return "new, with no reviews yet"
    return f"{rating:.1f}/5 from {count} review{'s' if count != 1 else ''}"


def _type_phrase(product_type: str) -> str:
    """'Running Shoes' -> 'running shoes', 'Hoodie' -> 'a hoodie' (to follow 'you bought')."""
    name = " ".join((product_type or "something").split()).lower()
    if name.endswith("s") and not name.endswith("ss"):
        return name
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _rating_stats(session: Session, ids: Sequence[int]) -> Dict[int, Tuple[float, int]]:
    if not ids:
        return {}
    rows = session.execute(
        select(Review.product_id, func.avg(Review.rating), func.count(Review.id))
        .where(Review.product_id.in_(list(ids)))
        .group_by(Review.product_id)
    ).all()
    return {pid: (round(float(avg), 1), int(count)) for pid, avg, count in rows}


VariantFilter = Callable[[Product, Variant], bool]


def _summaries_for(
    session: Session, ids: Sequence[int], shown: Optional[VariantFilter] = None
) -> List[ProductSummary]:
    """ProductSummary per id, in the order given (private stand-in for a public catalog.summaries_for).

    With `shown`, price, colours and sizes describe only the variants we recommend (e.g. in stock,
    within budget, not in a disliked colour).
    """
    if not ids:
        return []
    products = {
        p.id: p
        for p in session.execute(
            select(Product)
            .where(Product.id.in_(list(ids)))
            .options(selectinload(Product.variants), selectinload(Product.brand), selectinload(Product.category))
        ).scalars()
    }
    ratings = _rating_stats(session, ids)
    summaries = []
    for pid in ids:
        product = products.get(pid)
        if product is None or not product.variants:
            continue
        variants = sorted(product.variants, key=lambda v: v.id)
        chosen = [v for v in variants if shown(product, v)] if shown else variants
        chosen = chosen or variants
        cheapest = min(chosen, key=lambda v: (v.price_cents, v.id))
        rating = ratings.get(pid)
        summaries.append(ProductSummary(
            handle=product.handle,
            title=product.title,
            brand=product.brand.name if product.brand else "",
            category=product.category.name if product.category else "",
            price_cents=cheapest.price_cents,
            compare_at_price_cents=cheapest.compare_at_price_cents,
            colors=tuple(dict.fromkeys(v.color for v in chosen if v.color)),
            sizes=tuple(sorted(dict.fromkeys(v.size for v in chosen if v.size), key=size_sort_key)),
            in_stock=any(v.stock > 0 for v in chosen),
            rating=rating[0] if rating else None,
            review_count=rating[1] if rating else 0,
            image_url=product.image_url,
        ))
    return summaries


def _product_id(session: Session, handle: Optional[str]) -> Optional[int]:
    handle = (handle or "").strip().lower()[:200]
    if not handle:
        return None
    return session.execute(
        select(Product.id).where(Product.handle == handle, Product.published.is_(True))
    ).scalar_one_or_none()


def _in_stock_condition(product_id_column, max_price_cents: Optional[int] = None):
    conditions = [Variant.product_id == product_id_column, Variant.stock > 0]
    if max_price_cents is not None:
        conditions.append(Variant.price_cents <= max_price_cents)
    return exists().where(*conditions)


def _in_stock(product: Product, variant: Variant) -> bool:
    return variant.stock > 0


# --------------------------------------------------------------------------------------------
# Frequently bought together
# --------------------------------------------------------------------------------------------

def frequently_bought_together(session: Session, handle: str, limit: int = 3) -> List[ProductSummary]:
    """Other products found in the same (not cancelled) orders as this one, most shared orders first.

    Ties go to the better-rated product. Out-of-stock and unpublished products are left out; an
    unknown handle or a product nobody bought yet gives an empty list.
    """
    product_id = _product_id(session, handle)
    if product_id is None or limit <= 0:
        return []
    this_variant, other_variant = aliased(Variant), aliased(Variant)
    this_item, other_item = aliased(OrderItem), aliased(OrderItem)
    shared_orders = func.count(func.distinct(this_item.order_id))
    rating = (
        select(func.avg(Review.rating)).where(Review.product_id == other_variant.product_id).scalar_subquery()
    )
    rows = session.execute(
        select(other_variant.product_id, shared_orders.label("orders"))
        .select_from(this_variant)
        .join(this_item, this_item.variant_id == this_variant.id)
        .join(Order, Order.id == this_item.order_id)
        .join(other_item, other_item.order_id == this_item.order_id)
        .join(other_variant, other_variant.id == other_item.variant_id)
        .join(Product, Product.id == other_variant.product_id)
        .where(
            this_variant.product_id == product_id,
            other_variant.product_id != product_id,
            Order.status != "cancelled",
            Product.published.is_(True),
            _in_stock_condition(other_variant.product_id),
        )
        .group_by(other_variant.product_id)
        .order_by(shared_orders.desc(), func.coalesce(rating, 0).desc(), other_variant.product_id)
        .limit(min(limit, 20))
    ).all()
    return _summaries_for(session, [row[0] for row in rows], _in_stock)


# --------------------------------------------------------------------------------------------
# Better alternative
# --------------------------------------------------------------------------------------------

def better_alternative(session: Session, handle: str) -> Optional[Pick]:
    """A product of the same type (category when the type is blank) that is clearly better.

    Clearly better: in stock, at least 3 reviews and an average at least 0.3 higher; or a premium
    option (dearer and better rated). For a product without reviews, a sibling rated 4.0 or more
    qualifies. None when nothing qualifies (or the handle is unknown).
    """
    base = session.execute(
        select(Product).where(Product.handle == (handle or "").strip().lower()[:200], Product.published.is_(True))
        .options(selectinload(Product.variants))
    ).scalar_one_or_none()
    if base is None:
        return None
    base_stats = _rating_stats(session, [base.id]).get(base.id)
    base_rating = base_stats[0] if base_stats else None
    base_price = min((v.price_cents for v in base.variants), default=0)

    if (base.product_type or "").strip():
        same_group = Product.product_type == base.product_type
    elif base.category_id is not None:
        same_group = Product.category_id == base.category_id
    else:
        return None
    in_stock_price = (
        select(func.min(Variant.price_cents))
        .where(Variant.product_id == Review.product_id, Variant.stock > 0)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Review.product_id, func.avg(Review.rating), func.count(Review.id), in_stock_price)
        .join(Product, Product.id == Review.product_id)
        .where(same_group, Product.id != base.id, Product.published.is_(True))
        .group_by(Review.product_id)
        .having(func.count(Review.id) >= MIN_REVIEWS_FOR_ALTERNATIVE)
    ).all()

    better, premium = [], []
    for pid, avg, count, price in rows:
        if price is None:
            continue
        rating = round(float(avg), 1)
        if base_rating is None:
            if rating >= UNRATED_ALTERNATIVE_MIN_RATING:
                better.append((-rating, -count, abs(price - base_price), pid, rating, count, price))
        elif rating >= round(base_rating + ALTERNATIVE_MIN_GAIN, 1):
            better.append((-rating, -count, abs(price - base_price), pid, rating, count, price))
        elif rating > base_rating and price > base_price:
            premium.append((-rating, price, -count, pid, rating, count, price))
    if better:
        chosen, kind = min(better), "better"
    elif premium:
        chosen, kind = min(premium), "premium"
    else:
        return None
    pid, rating, count, price = chosen[3], chosen[4], chosen[5], chosen[6]
    summary = _summaries_for(session, [pid], _in_stock)[0]

    if base_rating is None:
        comparison = "while this one has no reviews yet"
    else:
        comparison = f"against {base_rating:.1f}/5 for the {base.title}"
    if price < base_price:
        price_note = f"and {_money(base_price - price)} cheaper"
    elif price > base_price:
        price_note = f"for {_money(price - base_price)} more"
    else:
        price_note = "at the same price"
    lead = "A premium pick: rated" if kind == "premium" else "Rated"
    reason = f"{lead} {rating:.1f}/5 from {count} reviews, {comparison}, {price_note}."
    return Pick(summary, reason)


# --------------------------------------------------------------------------------------------
# Gift quiz vocabulary (from shop/seed.py's product types, uses and materials)
# --------------------------------------------------------------------------------------------

ADULT_CATEGORIES = ("Apparel", "Shoes", "Accessories", "Electronics", "Home", "Beauty", "Sports")


@dataclass(frozen=True)
class Recipient:
    key: str
    genders: Tuple[str, ...]  # Product.gender values allowed; () = any
    categories: Tuple[str, ...]  # Category names allowed; () = any


@dataclass(frozen=True)
class Theme:
    """An occasion or a style: product types, material names, description phrases and title/tag words."""
    key: str
    label: str  # reads after "great for " (occasions) or before " style" (styles)
    types: Tuple[str, ...] = ()
    materials: Tuple[str, ...] = ()
    phrases: Tuple[str, ...] = ()  # matched in the description (the seed writes "made for {use}")
    words: Tuple[str, ...] = ()  # matched in tags (the seed tags the title's adjective)


_HER = ("women", "unisex")
_HIM = ("men", "unisex")
RECIPIENTS: Dict[str, Recipient] = {
    "mom": Recipient("mom", _HER, ADULT_CATEGORIES),
    "wife": Recipient("wife", _HER, ADULT_CATEGORIES),
    "girlfriend": Recipient("girlfriend", _HER, ADULT_CATEGORIES),
    "her": Recipient("her", _HER, ADULT_CATEGORIES),
    "dad": Recipient("dad", _HIM, ADULT_CATEGORIES),
    "husband": Recipient("husband", _HIM, ADULT_CATEGORIES),
    "boyfriend": Recipient("boyfriend", _HIM, ADULT_CATEGORIES),
    "him": Recipient("him", _HIM, ADULT_CATEGORIES),
    "kid": Recipient("kid", ("kids", "unisex"), ("Kids",)),
    "friend": Recipient("friend", (), ADULT_CATEGORIES),
    "partner": Recipient("partner", (), ADULT_CATEGORIES),
    # Sizes are a guess for a colleague: no clothes or shoes.
    "colleague": Recipient("colleague", ("unisex",), ("Accessories", "Electronics", "Home", "Beauty", "Sports")),
    "myself": Recipient("myself", (), ()),
}
_RECIPIENT_ALIASES = {
    "mother": "mom", "mum": "mom", "mama": "mom", "mommy": "mom", "mummy": "mom", "my mom": "mom",
    "father": "dad", "papa": "dad", "daddy": "dad", "my dad": "dad",
    "gf": "girlfriend", "bf": "boyfriend", "spouse": "partner", "fiance": "partner", "fiancee": "partner",
    "sister": "her", "aunt": "her", "grandma": "her", "grandmother": "her", "woman": "her", "women": "her",
    "brother": "him", "uncle": "him", "grandpa": "him", "grandfather": "him", "man": "him", "men": "him",
    "kids": "kid", "child": "kid", "children": "kid", "son": "kid", "daughter": "kid", "baby": "kid",
    "toddler": "kid", "nephew": "kid", "niece": "kid", "boy": "kid", "girl": "kid",
    "friends": "friend", "best friend": "friend", "bestie": "friend", "buddy": "friend",
    "coworker": "colleague", "co-worker": "colleague", "colleagues": "colleague", "boss": "colleague",
    "teacher": "colleague", "me": "myself", "self": "myself", "for me": "myself", "i": "myself",
}

OCCASIONS: Dict[str, Theme] = {t.key: t for t in (
    Theme("birthday", "a birthday",
          types=("Perfume", "Watch", "Scented Candle", "Headphones", "Wireless Earbuds", "Wallet", "Sunglasses",
                 "Smartwatch", "Bluetooth Speaker", "Throw Blanket", "Scarf", "Plush Toy", "Building Blocks Set"),
          phrases=("gifting", "special occasions")),
    Theme("anniversary", "an anniversary",
          types=("Watch", "Perfume", "Scented Candle", "Scarf", "Wallet", "Dress", "Throw Blanket", "Sunglasses"),
          phrases=("special occasions", "gifting", "evenings out")),
    Theme("wedding", "a wedding",
          types=("Dress", "Loafers", "Watch", "Perfume", "Duvet Cover", "Table Lamp", "Throw Blanket", "Bath Towel"),
          phrases=("weddings", "special occasions")),
    Theme("christmas", "the holidays",
          types=("Sweater", "Scarf", "Throw Blanket", "Scented Candle", "Mug", "Plush Toy", "Building Blocks Set",
                 "Headphones", "Perfume", "Kids Pyjamas"),
          phrases=("winter", "cosy evenings", "gifting")),
    Theme("graduation", "a graduation",
          types=("Watch", "Backpack", "Headphones", "Wireless Earbuds", "Smartwatch", "Wallet", "Keyboard",
                 "Power Bank")),
    Theme("running", "running",
          types=("Running Shoes", "Trail Shoes", "Training Shorts", "Sports Bra", "Leggings", "Water Bottle",
                 "Smartwatch"),
          phrases=("running", "marathon", "daily miles")),
    Theme("hiking", "hiking",
          types=("Trail Shoes", "Boots", "Backpack", "Water Bottle"),
          phrases=("hiking", "muddy paths", "camping")),
    Theme("gym", "the gym",
          types=("Training Shorts", "Sports Bra", "Leggings", "Gym Bag", "Water Bottle", "Yoga Mat", "Track Jacket"),
          phrases=("the gym", "workouts", "hiit", "home workouts")),
    Theme("work", "the office",
          types=("Shirt", "Chinos", "Loafers", "Belt", "Watch", "Tote Bag", "Keyboard"),
          phrases=("the office", "working from home", "commuting")),
    Theme("travel", "travel",
          types=("Backpack", "Power Bank", "Headphones", "Wireless Earbuds", "Sunglasses", "Gym Bag"),
          phrases=("travel", "long flights", "city breaks", "weekend trips")),
    Theme("party", "parties",
          types=("Bluetooth Speaker", "Dress", "Perfume", "Lipstick"),
          phrases=("parties", "evenings out", "dinners out")),
)}
_OCCASION_ALIASES = {
    "bday": "birthday", "birthdays": "birthday", "birthday party": "birthday",
    "anniversaries": "anniversary", "weddings": "wedding", "marriage": "wedding",
    "xmas": "christmas", "x-mas": "christmas", "holiday": "christmas", "holidays": "christmas",
    "the holidays": "christmas", "holiday season": "christmas", "new year": "christmas",
    "grad": "graduation", "graduating": "graduation", "run": "running", "jogging": "running", "marathon": "running",
    "hike": "hiking", "trekking": "hiking", "camping": "hiking", "outdoors": "hiking",
    "workout": "gym", "workouts": "gym", "fitness": "gym", "training": "gym", "the gym": "gym",
    "office": "work", "the office": "work", "business": "work", "job": "work", "new job": "work",
    "trip": "travel", "travelling": "travel", "traveling": "travel", "vacation": "travel",
    "parties": "party", "night out": "party", "housewarming": "party",
}

STYLES: Dict[str, Theme] = {t.key: t for t in (
    Theme("casual", "casual",
          types=("T-Shirt", "Jeans", "Hoodie", "Sneakers", "Shorts", "Cap", "Tote Bag", "Sandals"),
          phrases=("everyday wear", "weekends"),
          words=("relaxed", "everyday", "weekend", "washed", "oversized")),
    Theme("sporty", "sporty",
          types=("Running Shoes", "Trail Shoes", "Training Shorts", "Sports Bra", "Track Jacket", "Leggings",
                 "Gym Bag", "Water Bottle", "Smartwatch", "Yoga Mat"),
          words=("performance", "active")),
    Theme("elegant", "elegant",
          types=("Dress", "Loafers", "Watch", "Perfume", "Coat"),
          materials=("silk", "cashmere blend", "merino wool", "stainless steel"),
          phrases=("special occasions", "evenings out", "weddings"),
          words=("tailored", "signature", "premium")),
    Theme("classic", "classic",
          types=("Shirt", "Chinos", "Loafers", "Watch", "Belt", "Coat"),
          materials=("selvedge denim", "oxford cotton", "cotton gabardine"),
          words=("classic", "heritage", "vintage", "essential")),
    Theme("outdoorsy", "outdoorsy",
          types=("Boots", "Trail Shoes", "Backpack", "Water Bottle", "Bluetooth Speaker"),
          materials=("waterproof nylon", "ripstop mesh"),
          phrases=("hiking", "camping", "muddy paths", "rainy days", "autumn walks"),
          words=("rugged",)),
    Theme("cosy", "cosy",
          types=("Sweater", "Hoodie", "Throw Blanket", "Scented Candle", "Mug", "Cushion Cover", "Kids Pyjamas"),
          materials=("wool", "cashmere blend", "fleece", "cotton fleece", "velvet", "merino wool"),
          phrases=("cosy evenings", "lounging", "the sofa"),
          words=("cozy", "soft")),
)}
_STYLE_ALIASES = {
    "cozy": "cosy", "comfy": "cosy", "comfortable": "cosy", "warm": "cosy",
    "sport": "sporty", "sports": "sporty", "athletic": "sporty", "active": "sporty",
    "elegance": "elegant", "chic": "elegant", "smart": "elegant", "dressy": "elegant", "luxury": "elegant",
    "classy": "classic", "timeless": "classic", "traditional": "classic",
    "outdoor": "outdoorsy", "outdoors": "outdoorsy", "adventurous": "outdoorsy", "rugged": "outdoorsy",
    "relaxed": "casual", "laid back": "casual", "laid-back": "casual", "everyday": "casual",
}

# Canonical answers for quiz buttons.
GIFT_RECIPIENTS: Tuple[str, ...] = ("mom", "dad", "girlfriend", "boyfriend", "wife", "husband", "kid", "friend",
                                    "colleague", "myself")
GIFT_OCCASIONS: Tuple[str, ...] = tuple(OCCASIONS)
GIFT_STYLES: Tuple[str, ...] = tuple(STYLES)


def _clean_answer(text: Optional[str]) -> str:
    words = " ".join(str(text or "").strip().lower().replace("\u2019", "'").split())[:60]
    for prefix in ("my ", "for my ", "for a ", "for an ", "for ", "a ", "an ", "the "):
        if words.startswith(prefix) and words[len(prefix):] not in ("", "holidays", "gym", "office"):
            words = words[len(prefix):]
    return words.strip(" .!?")


_FOR_ONESELF = re.compile(r"\b(?:for me|for myself|myself|for my ?self|me personally|suits? me)\b")
_OTHER_RECIPIENT_WORDS = {
    word for word in (set(RECIPIENTS) | set(_RECIPIENT_ALIASES)) - {"myself", "me", "self", "for me", "i"}
    if " " not in word
}


def asks_for_oneself(text: Optional[str]) -> bool:
    """"Recommend something for me": picks for the shopper, not a gift, unless someone else is named too.

    The entity extractor misses "me" in such requests because "me" is rarely an entity elsewhere.
    """
    words = " ".join(str(text or "").lower().replace("\u2019", "'").split())[:200]
    if not _FOR_ONESELF.search(words):
        return False
    return not _OTHER_RECIPIENT_WORDS & set(re.findall(r"[a-z][a-z-]*", words))


def resolve_recipient(text: Optional[str]) -> Optional[Recipient]:
    answer = _clean_answer(text)
    if not answer:
        return None
    answer = _RECIPIENT_ALIASES.get(answer, answer)
    return RECIPIENTS.get(answer)


def _resolve_theme(text: Optional[str], themes: Dict[str, Theme], aliases: Dict[str, str]) -> Optional[Theme]:
    answer = _clean_answer(text)
    if not answer:
        return None
    key = aliases.get(answer, answer)
    if key in themes:
        return themes[key]
    # A free answer ("yoga", "beach") is matched as a word in product types, descriptions and tags.
    word = answer[:40]
    singular = word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word
    return Theme(answer, answer, phrases=(singular,), words=(singular,))


def resolve_occasion(text: Optional[str]) -> Optional[Theme]:
    return _resolve_theme(text, OCCASIONS, _OCCASION_ALIASES)


def resolve_style(text: Optional[str]) -> Optional[Theme]:
    return _resolve_theme(text, STYLES, _STYLE_ALIASES)


def _theme_condition(theme: Theme):
    conditions = []
    if theme.types:
        conditions.append(Product.product_type.in_(theme.types))
    if theme.materials:
        conditions.append(func.lower(Product.material).in_(theme.materials))
    for phrase in theme.phrases:
        conditions.append(_contains(Product.description, phrase))
        if not theme.types:
            conditions.append(_contains(Product.product_type, phrase))
    for word in theme.words:
        conditions.append(_contains(Product.tags, word))
    return or_(*conditions)


# --------------------------------------------------------------------------------------------
# Gift picks
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Candidate:
    id: int
    product_type: str
    rating: Optional[float]  # one decimal; None without reviews
    review_count: int


def _scored_candidates(
    session: Session,
    conditions: Sequence,
    exclude_types: Iterable[str] = (),
    exclude_ids: Iterable[int] = (),
    max_price_cents: Optional[int] = None,
) -> Iterator[_Candidate]:
    """Published products in stock (within `max_price_cents`) matching `conditions`, best first.

    Reviewed products come first by average rating x review count (those rated below
    GIFT_MIN_RATING never), then products without reviews. Lazy: the top of the shop-wide ranking
    is tried first, so a caller that stops early never scores the whole catalog.
    """
    where = [Product.published.is_(True), _in_stock_condition(Product.id, max_price_cents), *conditions]
    exclude_types, exclude_ids = sorted(set(exclude_types)), sorted(set(exclude_ids))
    if exclude_types:
        where.append(Product.product_type.not_in(exclude_types))
    if exclude_ids:
        where.append(Product.id.not_in(exclude_ids))
    average, count = func.avg(Review.rating), func.count(Review.id)
    reviewed = session.execute(select(func.count(func.distinct(Review.product_id)))).scalar_one()
    # 1. The top of the shop-wide ranking: enough when the conditions are loose.
    ranking = (
        select(Review.product_id.label("pid"), average.label("avg"), count.label("n"))
        .group_by(Review.product_id)
        .having(average >= GIFT_MIN_RATING)
        .order_by((average * count).desc(), Review.product_id)
        .limit(FIRST_RANKING_CHUNK)
        .subquery()
    )
    rows = session.execute(
        select(Product.id, Product.product_type, ranking.c.avg, ranking.c.n)
        .join(ranking, ranking.c.pid == Product.id)
        .outerjoin(Category, Category.id == Product.category_id)
        .where(*where)
        .order_by((ranking.c.avg * ranking.c.n).desc(), Product.id)
    ).all()
    yielded = set()
    for pid, ptype, avg, n in rows:
        yielded.add(pid)
        yield _Candidate(pid, ptype or "", round(float(avg), 1), int(n))
    # 2. Still wanted: score exactly the products that match (cheap when the conditions are tight).
    if reviewed > FIRST_RANKING_CHUNK:
        result = session.execute(
            select(Product.id, Product.product_type, average, count)
            .join(Review, Review.product_id == Product.id)
            .outerjoin(Category, Category.id == Product.category_id)
            .where(*where)
            .group_by(Product.id, Product.product_type)
            .having(average >= GIFT_MIN_RATING)
            .order_by((average * count).desc(), Product.id)
        )
        try:
            for pid, ptype, avg, n in result:
                if pid not in yielded:
                    yield _Candidate(pid, ptype or "", round(float(avg), 1), int(n))
        finally:
            result.close()
    # 3. Products nobody has reviewed yet, oldest first.
    last_id = 0
    unreviewed = ~exists().where(Review.product_id == Product.id)
    while True:
        rows = session.execute(
            select(Product.id, Product.product_type)
            .outerjoin(Category, Category.id == Product.category_id)
            .where(*where, unreviewed, Product.id > last_id)
            .order_by(Product.id)
            .limit(500)
        ).all()
        if not rows:
            return
        for pid, ptype in rows:
            yield _Candidate(pid, ptype or "", None, 0)
        last_id = rows[-1][0]


def _best_per_type(candidates: Iterable[_Candidate], wanted: int, taken_types: Set[str]) -> List[_Candidate]:
    """The first (best) candidate of each product type not taken yet, until `wanted` are found."""
    found: List[_Candidate] = []
    types = set(taken_types)
    if wanted <= 0:
        return found
    for candidate in candidates:
        if candidate.product_type in types:
            continue
        types.add(candidate.product_type)
        found.append(candidate)
        if len(found) >= wanted:
            break
    return found


def gift_picks(
    session: Session,
    occasion: Optional[str] = None,
    recipient: Optional[str] = None,
    style: Optional[str] = None,
    budget_cents: Optional[int] = None,
    limit: int = 5,
) -> List[Pick]:
    """Up to `limit` (3-5 by default) in-stock gift ideas within budget, one per product type.

    Ranked by average rating x review count. The recipient limits gender and categories (never
    relaxed); when fewer than 3 products fit everything, the style and then the occasion are set
    aside for the remaining picks, and their reasons say so.
    """
    if budget_cents is not None and budget_cents <= 0:
        raise ValueError("the gift budget must be more than zero")
    limit = max(1, min(int(limit), 10))
    who = resolve_recipient(recipient)
    occasion_theme = resolve_occasion(occasion)
    style_theme = resolve_style(style)

    base_conditions = []
    if who is not None:
        if who.genders:
            base_conditions.append(Product.gender.in_(who.genders))
        if who.categories:
            base_conditions.append(Category.name.in_(who.categories))
    occasion_condition = _theme_condition(occasion_theme) if occasion_theme else None
    style_condition = _theme_condition(style_theme) if style_theme else None

    # Strict first, then without the style, then without the occasion as well.
    attempts: List[Tuple[list, Tuple[str, ...]]] = [
        ([c for c in (occasion_condition, style_condition) if c is not None], ()),
    ]
    if style_condition is not None:
        attempts.append(([c for c in (occasion_condition,) if c is not None], ("style",)))
    if occasion_condition is not None:
        attempts.append(([], ("style", "occasion") if style_condition is not None else ("occasion",)))

    found: List[Tuple[int, str, Optional[float], int, Tuple[str, ...]]] = []
    enough = min(MIN_GIFT_PICKS, limit)
    for extra, relaxed in attempts:
        if len(found) >= enough:
            break
        # Everything that fits every answer, up to `limit`; looser picks only up to `enough`.
        wanted = (limit if not relaxed else enough) - len(found)
        taken_types = {r[1] for r in found}
        candidates = _scored_candidates(
            session, base_conditions + extra, taken_types, {r[0] for r in found}, budget_cents
        )
        found.extend((c.id, c.product_type, c.rating, c.review_count, relaxed)
                     for c in _best_per_type(candidates, wanted, taken_types))

    def shown(product: Product, variant: Variant) -> bool:
        return variant.stock > 0 and (budget_cents is None or variant.price_cents <= budget_cents)

    summaries = _summaries_for(session, [r[0] for r in found], shown)
    picks = []
    for summary, (_pid, _ptype, avg, n, relaxed) in zip(summaries, found):
        parts = [_reviews_phrase(avg, n)]
        if budget_cents is not None:
            parts.append(f"{_money(summary.price_cents)}, within your {_money(budget_cents)} budget")
        if occasion_theme is not None and "occasion" not in relaxed:
            popular = n >= 10 and avg is not None and avg >= 4.0
            parts.append(f"{'popular' if popular else 'great'} for {occasion_theme.label}")
        if style_theme is not None and "style" not in relaxed:
            parts.append(f"{_article(style_theme.label)} {style_theme.label} choice")
        if "occasion" in relaxed and "style" in relaxed:
            parts.append(f"not specifically {style_theme.label} or for {occasion_theme.label}, "
                         "as few products match both")
        elif "occasion" in relaxed:
            parts.append(f"not specifically for {occasion_theme.label}, as few products match")
        elif "style" in relaxed:
            parts.append(f"not specifically {style_theme.label}, as few {style_theme.label} products match")
        reason = ", ".join(parts)
        picks.append(Pick(summary, reason[0].upper() + reason[1:] + ".", relaxed))
    return picks


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------------------------
# Personalised picks
# --------------------------------------------------------------------------------------------

_CLOTHING = set(CLOTHING_SIZE_ORDER)


def _size_system(product: Product) -> Optional[str]:
    """'clothing' (XS..XXL), 'shoes' (EU numbers) or None (one size, kids' sizes, anything else)."""
    if product.category is not None and product.category.name == "Kids":
        return None
    sizes = {normalise_size(v.size) for v in product.variants if v.size}
    if not sizes:
        return None
    if sizes <= _CLOTHING:
        return "clothing"
    if all(s.replace(".", "", 1).isdigit() and 30 <= float(s) <= 50 for s in sizes):
        return "shoes"
    return None


@dataclass
class _History:
    bought_ids: Set[int] = field(default_factory=set)
    # product type -> (last purchase time, category name)
    types: Dict[str, Tuple[datetime, str]] = field(default_factory=dict)
    categories: Dict[str, datetime] = field(default_factory=dict)
    sizes: Dict[str, Counter] = field(default_factory=lambda: {"clothing": Counter(), "shoes": Counter()})


def _history(session: Session, customer: Customer) -> _History:
    rows = session.execute(
        select(Product.id, Product.product_type, Category.name, Variant.size, Order.placed_at)
        .select_from(OrderItem)
        .join(Order, Order.id == OrderItem.order_id)
        .join(Variant, Variant.id == OrderItem.variant_id)
        .join(Product, Product.id == Variant.product_id)
        .outerjoin(Category, Category.id == Product.category_id)
        .where(
            Order.id.in_(
                select(Order.id).where(Order.customer_id == customer.id)
                .union(select(Order.id).where(Order.email == customer.email))
            ),
            Order.status != "cancelled",
        )
        .order_by(Order.placed_at)
    ).all()
    history = _History()
    for pid, ptype, category, size, placed_at in rows:
        history.bought_ids.add(pid)
        if ptype:
            history.types[ptype] = (placed_at, category or "")
        if category:
            history.categories[category] = placed_at
        if category == "Kids":
            continue  # bought for someone else
        normalised = normalise_size(size)
        if normalised in _CLOTHING:
            history.sizes["clothing"][normalised] += 1
        elif normalised.isdigit() and 30 <= int(normalised) <= 50:
            history.sizes["shoes"][normalised] += 1
    return history


def _when(moment: datetime, today: date) -> str:
    if moment.year == today.year or (today - moment.date()).days < 180:
        return f"in {moment.strftime('%B')}"
    return f"in {moment.strftime('%B %Y')}"


def personalised_picks(session: Session, email: str, limit: int = 5, today: Optional[date] = None) -> List[Pick]:
    """Picks for a returning customer from their orders and stored preferences; [] for an unknown email.

    Never an already-bought product, never a variant in a disliked colour; sized products only
    when their size (stored, or the size they usually buy) is in stock. Reasons say why.
    """
    customer = find_customer(session, email)
    if customer is None:
        return []
    limit = max(1, min(int(limit), 10))
    today = today or date.today()
    prefs = dict(customer.preferences or {})
    history = _history(session, customer)
    disliked = {normalise_color(c) for c in prefs.get("disliked_colors") or [] if normalise_color(c)}
    liked = [normalise_color(c) for c in prefs.get("liked_colors") or [] if normalise_color(c)]
    liked = [c for c in dict.fromkeys(liked) if c not in disliked]
    their_size: Dict[str, Tuple[str, bool]] = {}  # system -> (size, stored by them)
    if prefs.get("size") and normalise_size(prefs["size"]) in _CLOTHING:
        their_size["clothing"] = (normalise_size(prefs["size"]), True)
    elif history.sizes["clothing"]:
        their_size["clothing"] = (history.sizes["clothing"].most_common(1)[0][0], False)
    if prefs.get("shoe_size") and normalise_size(prefs["shoe_size"]):
        their_size["shoes"] = (normalise_size(prefs["shoe_size"]), True)
    elif history.sizes["shoes"]:
        their_size["shoes"] = (history.sizes["shoes"].most_common(1)[0][0], False)

    # Tiers of reasons, most personal first: types they bought, categories they bought from,
    # categories they told us they like, then the shop's best-rated products.
    tiers: List[Tuple[object, Callable[[Product], str]]] = []
    recent_types = sorted(history.types.items(), key=lambda kv: kv[1][0], reverse=True)
    if recent_types:
        bought_when = {t: when for t, (when, _c) in recent_types}
        tiers.append((Product.product_type.in_([t for t, _ in recent_types]),
                      lambda p: f"you bought {_type_phrase(p.product_type)} "
                                f"{_when(bought_when[p.product_type], today)}"))
    if history.categories:
        tiers.append((Category.name.in_(sorted(history.categories)),
                      lambda p: f"you have shopped our {p.category.name} range before"))
    favourites = [c for c in prefs.get("favorite_categories") or [] if isinstance(c, str)]
    if favourites:
        tiers.append((func.lower(Category.name).in_([c.lower() for c in favourites]),
                      lambda p: f"{p.category.name} is one of your favourite categories"))
    tiers.append((None, lambda p: "one of our best-rated products"))

    def usable(product: Product) -> List[Variant]:
        variants = [v for v in product.variants if v.stock > 0 and normalise_color(v.color) not in disliked]
        system = _size_system(product)
        if system and system in their_size:
            variants = [v for v in variants if normalise_size(v.size) == their_size[system][0]]
        return variants

    chosen: List[Tuple[int, str, Tuple[int, ...]]] = []  # (product id, reason, usable variant ids)
    seen_types: Set[str] = set()
    seen_ids: Set[int] = set(history.bought_ids)
    for condition, why in tiers:
        remaining = limit - len(chosen)
        if remaining <= 0:
            break
        candidates = _scored_candidates(session, [condition] if condition is not None else [], seen_types, seen_ids)
        # Products in a liked colour first, then by rating x review count (the candidates' order).
        scored = []
        usable_types: Set[str] = set()
        for order, (candidate, product) in enumerate(_with_products(session, candidates)):
            variants = usable(product)
            if variants:
                liked_here = [c for c in liked if any(normalise_color(v.color) == c for v in variants)]
                scored.append((0 if liked_here else 1, order, candidate, product, variants, liked_here))
                usable_types.add(candidate.product_type)
            if len(usable_types) >= 2 * remaining or order >= MAX_PERSONAL_CANDIDATES:
                break
        scored.sort(key=lambda row: (row[0], row[1]))
        for _liked_rank, _order, candidate, product, variants, liked_here in scored:
            if len(chosen) >= limit:
                break
            if candidate.product_type in seen_types or product.id in seen_ids:
                continue
            parts = [why(product)]
            system = _size_system(product)
            if system and system in their_size:
                parts.append(f"in stock in your size {their_size[system][0]}")
            if liked_here:
                parts.append(f"available in {liked_here[0]}, a colour you like")
            if candidate.review_count:
                parts.append(f"rated {_reviews_phrase(candidate.rating, candidate.review_count)}")
            reason = ", ".join(parts)
            seen_types.add(candidate.product_type)
            seen_ids.add(product.id)
            chosen.append((product.id, reason[0].upper() + reason[1:] + ".", tuple(v.id for v in variants)))

    allowed = {vid for _pid, _reason, ids in chosen for vid in ids}
    summaries = _summaries_for(session, [c[0] for c in chosen], lambda p, v: v.id in allowed)
    return [Pick(summary, reason) for summary, (_pid, reason, _ids) in zip(summaries, chosen)]


def _with_products(session: Session, candidates: Iterable[_Candidate], batch_size: int = 40
                   ) -> Iterator[Tuple[_Candidate, Product]]:
    """Each candidate with its Product (variants and category loaded), at most a few per product type."""
    per_type: Counter = Counter()
    batch: List[_Candidate] = []

    def load(rows: List[_Candidate]) -> Iterator[Tuple[_Candidate, Product]]:
        products = {
            p.id: p
            for p in session.execute(
                select(Product).where(Product.id.in_([c.id for c in rows]))
                .options(selectinload(Product.variants), selectinload(Product.category))
            ).scalars()
        }
        for c in rows:
            if c.id in products:
                yield c, products[c.id]

    for candidate in candidates:
        if per_type[candidate.product_type] >= CANDIDATES_PER_TYPE:
            continue
        per_type[candidate.product_type] += 1
        batch.append(candidate)
        if len(batch) >= batch_size:
            yield from load(batch)
            batch = []
    if batch:
        yield from load(batch)


# --------------------------------------------------------------------------------------------
# Preferences
# --------------------------------------------------------------------------------------------

class UnknownCustomer(LookupError):
    """No customer has this email address; nothing was stored."""


class PreferenceError(ValueError):
    """A preference that cannot be stored as given (e.g. an unknown size); nothing was stored."""


def find_customer(session: Session, email: Optional[str]) -> Optional[Customer]:
    address = (email or "").strip().lower()[:255]
    if not address or "@" not in address:
        return None
    return session.execute(
        select(Customer).where(func.lower(Customer.email) == address)
    ).scalars().first()


def _color_preference(text: str, what: str) -> str:
    color = normalise_color(text)
    if not color or len(color) > 30 or not all(ch.isalpha() or ch in " -" for ch in color):
        raise PreferenceError(f"{text!r} is not a colour I can remember as {what}")
    return color


def update_preferences(
    session: Session,
    email: str,
    size: Optional[str] = None,
    shoe_size: Optional[str] = None,
    like_color: Optional[str] = None,
    dislike_color: Optional[str] = None,
) -> dict:
    """Store sizes and colour likes on the customer and return their preferences.

    Raises UnknownCustomer for an email no customer has (nothing is created) and PreferenceError
    for a value that makes no sense; in both cases nothing changes. Disliking a colour removes it
    from the liked colours and vice versa.
    """
    customer = find_customer(session, email)
    if customer is None:
        raise UnknownCustomer(f"no customer with the email address {(email or '').strip()!r}")
    prefs = dict(customer.preferences or {})
    updates: Dict[str, object] = {}
    if size is not None:
        value = normalise_size(size)
        if value not in _CLOTHING:
            raise PreferenceError(f"{size!r} is not a clothing size; use one of {', '.join(CLOTHING_SIZE_ORDER)}")
        updates["size"] = value
    if shoe_size is not None:
        value = normalise_size(shoe_size)
        try:
            number = float(value)
        except ValueError:
            number = -1
        if not 16 <= number <= 50:
            raise PreferenceError(f"{shoe_size!r} is not an EU shoe size (16-50)")
        updates["shoe_size"] = value
    like = _color_preference(like_color, "a colour you like") if like_color is not None else None
    dislike = _color_preference(dislike_color, "a colour you dislike") if dislike_color is not None else None
    if like and like == dislike:
        raise PreferenceError(f"{like} cannot be both liked and disliked")

    liked = [normalise_color(c) for c in prefs.get("liked_colors") or []]
    disliked = [normalise_color(c) for c in prefs.get("disliked_colors") or []]
    if like:
        disliked = [c for c in disliked if c != like]
        liked = [c for c in liked if c != like] + [like]
    if dislike:
        liked = [c for c in liked if c != dislike]
        disliked = [c for c in disliked if c != dislike] + [dislike]
    prefs.update(updates)
    if like or dislike:
        prefs["liked_colors"] = list(dict.fromkeys(c for c in liked if c))
        prefs["disliked_colors"] = list(dict.fromkeys(c for c in disliked if c))
    customer.preferences = prefs  # a new dict, so SQLAlchemy sees the change to the JSON column
    session.flush()
    return dict(prefs)
