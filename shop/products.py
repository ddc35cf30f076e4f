"""Answers about one product: facts for a product page, variant availability, review summaries.

Everything here takes plain values (a handle, a colour, a size) and returns plain frozen
dataclasses, so a chat action, a web page or a CLI can phrase the answer its own way.
Unpublished products are treated as unknown: shoppers never see drafts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shop.catalog import get_product
from shop.models import Product, Review, Variant

EXCERPT_MAX_CHARS = 140
DEFAULT_DELIVERY_DAYS = {"standard": "3-5", "express": "1-2"}
DELIVERY_ENV = {"standard": "SHOP_STANDARD_DELIVERY_DAYS", "express": "SHOP_EXPRESS_DELIVERY_DAYS"}

# --------------------------------------------------------------------------------------------
# Sizes and colours as shoppers say them
# --------------------------------------------------------------------------------------------

CLOTHING_SIZE_ORDER: Tuple[str, ...] = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL")
_SIZE_WORDS = {
    "xxs": "XXS", "xx small": "XXS", "extra extra small": "XXS", "2xs": "XXS",
    "xs": "XS", "x small": "XS", "extra small": "XS",
    "s": "S", "small": "S", "sm": "S",
    "m": "M", "medium": "M", "med": "M", "md": "M",
    "l": "L", "large": "L", "lg": "L",
    "xl": "XL", "x large": "XL", "extra large": "XL",
    "xxl": "XXL", "xx large": "XXL", "extra extra large": "XXL", "2xl": "XXL",
    "xxxl": "XXXL", "xxx large": "XXXL", "3xl": "XXXL",
    "one size": "One Size", "onesize": "One Size", "one size fits all": "One Size", "os": "One Size",
}
_SIZE_PREFIX = re.compile(r"^(?:(?:in\s+)?(?:a\s+)?(?:size|sz|eu|us|uk)\s*)+", re.IGNORECASE)
_KIDS_AGE = re.compile(r"^(\d{1,2})\s*-\s*(\d{1,2})\s*(?:y|yr|yrs|year|years)?(?:\s*old)?$")
_COLOR_ALIASES = {"gray": "grey", "navy blue": "navy", "dark blue": "navy", "off white": "white", "tan": "beige"}


def normalise_size(text: Optional[str]) -> str:
    """A size as the catalog writes it: 'extra large' -> 'XL', 'medium' -> 'M', 'size 42' -> '42'.

    Unknown words come back stripped but otherwise unchanged, so they simply match nothing.
    """
    if text is None:
        return ""
    raw = " ".join(str(text).strip().split())[:30]
    cleaned = _SIZE_PREFIX.sub("", raw).strip()
    words = re.sub(r"[-_.]+(?=[a-z])", " ", cleaned.lower())  # 'x-large' -> 'x large', keep '4-5y'
    words = " ".join(words.split())
    if words in _SIZE_WORDS:
        return _SIZE_WORDS[words]
    number = re.fullmatch(r"(\d{1,3})(?:[.,](\d))?", words)
    if number:
        whole, half = number.groups()
        return whole if not half or half == "0" else f"{whole}.{half}"
    kids = _KIDS_AGE.match(words)
    if kids:
        return f"{int(kids.group(1))}-{int(kids.group(2))}Y"
    return cleaned


def normalise_color(text: Optional[str]) -> str:
    if text is None:
        return ""
    color = " ".join(str(text).strip().lower().split())[:60]
    return _COLOR_ALIASES.get(color, color)


def size_sort_key(size: str) -> Tuple[int, float, str]:
    """Order sizes like a size chart: XS < S < M ..., 36 < 41 < 42, 2-3Y < 4-5Y, then by name."""
    if size in CLOTHING_SIZE_ORDER:
        return (0, float(CLOTHING_SIZE_ORDER.index(size)), size)
    number = re.match(r"(\d+(?:\.\d+)?)", size)
    if number:
        return (1, float(number.group(1)), size)
    return (2, 0.0, size.lower())


def _size_distance(a: str, b: str) -> float:
    ka, kb = size_sort_key(a), size_sort_key(b)
    if ka[0] != kb[0] or ka[0] == 2:
        return 1000.0
    return abs(ka[1] - kb[1])


# --------------------------------------------------------------------------------------------
# Delivery estimates
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryEstimate:
    method: str  # "standard" or "express"
    min_business_days: int
    max_business_days: int
    earliest: date
    latest: date


def _parse_days(value: str, name: str) -> Tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?", value or "")
    if not match:
        raise ValueError(f"{name} must be business days like '3-5' or '2', got {value!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if low < 0 or high < low:
        raise ValueError(f"{name} must be a range from fewer to more days like '3-5', got {value!r}")
    return low, high


def delivery_days() -> Dict[str, Tuple[int, int]]:
    """Business days per shipping method, read from the environment on each call."""
    return {
        method: _parse_days(os.environ.get(env) or DEFAULT_DELIVERY_DAYS[method], env)
        for method, env in DELIVERY_ENV.items()
    }


def add_business_days(start: date, days: int) -> date:
    """The day `days` business days after `start` (Saturdays and Sundays don't count)."""
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def delivery_estimate(method: str = "standard", today: Optional[date] = None) -> DeliveryEstimate:
    """Order today -> delivered between these two dates."""
    days = delivery_days()
    if method not in days:
        raise ValueError(f"unknown shipping method {method!r}; expected one of {', '.join(days)}")
    low, high = days[method]
    today = today or date.today()
    return DeliveryEstimate(method, low, high, add_business_days(today, low), add_business_days(today, high))


# --------------------------------------------------------------------------------------------
# Review excerpts
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewExcerpt:
    rating: int
    author: str
    title: str
    text: str  # the review's first sentence, at most EXCERPT_MAX_CHARS characters
    created_at: datetime


def first_sentence(text: str, max_chars: int = EXCERPT_MAX_CHARS) -> str:
    text = " ".join((text or "").split())
    if not text:
        return ""
    match = re.search(r"(?<=[.!?])\s", text)
    sentence = text[: match.start()] if match else text
    if len(sentence) <= max_chars:
        return sentence
    cut = sentence[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "\u2026"


def _excerpt(review: Review) -> ReviewExcerpt:
    text = first_sentence(review.body) or first_sentence(review.title)
    return ReviewExcerpt(review.rating, review.author_name, review.title, text, review.created_at)


def _best_review(reviews: Iterable[Review], positive: bool) -> Optional[Review]:
    """Highest (or lowest) rated, then most recent, with some text to quote."""
    quotable = [r for r in reviews if (r.body or r.title or "").strip()]
    if positive:
        quotable = [r for r in quotable if r.rating >= 4]
        key = lambda r: (r.rating, r.created_at, len(r.body or ""), r.id)  # noqa: E731
    else:
        quotable = [r for r in quotable if r.rating <= 3]
        key = lambda r: (-r.rating, r.created_at, len(r.body or ""), r.id)  # noqa: E731
    return max(quotable, key=key) if quotable else None


# --------------------------------------------------------------------------------------------
# Product facts
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProductFacts:
    handle: str
    title: str
    brand: str
    category: str
    product_type: str
    material: str
    gender: str
    description: str
    price_min_cents: int
    price_max_cents: int
    compare_at_price_cents: Optional[int]  # highest "was" price above the current one, when on sale
    colors: Tuple[str, ...]  # every colour offered, in stock or not
    sizes: Tuple[str, ...]  # every size offered, in size-chart order
    variants_in_stock: Mapping[str, Tuple[str, ...]]  # colour -> sizes in stock; only colours with stock
    out_of_stock: Tuple[str, ...]  # variant labels like "white / 42"
    total_stock: int
    rating: Optional[float]  # average, one decimal; None without reviews
    review_count: int
    review_excerpt: Optional[str]
    delivery: DeliveryEstimate  # standard shipping
    express_delivery: DeliveryEstimate

    @property
    def url_path(self) -> str:
        return f"/products/{self.handle}"

    @property
    def in_stock(self) -> bool:
        return self.total_stock > 0

    @property
    def on_sale(self) -> bool:
        return self.compare_at_price_cents is not None


def _published_product(session: Session, handle: Optional[str]) -> Optional[Product]:
    handle = (handle or "").strip().lower()
    if not handle:
        return None
    product = get_product(session, handle)
    if product is None or not product.published:
        return None
    return product


def _variant_label(variant: Variant) -> str:
    return " / ".join(p for p in (variant.color, variant.size) if p) or "Default"


def _sorted_variants(variants: Sequence[Variant]) -> List[Variant]:
    color_order = list(dict.fromkeys(v.color for v in variants))
    return sorted(variants, key=lambda v: (color_order.index(v.color), size_sort_key(v.size), v.id or 0))


def _rating(reviews: Sequence[Review]) -> Optional[float]:
    if not reviews:
        return None
    return round(sum(r.rating for r in reviews) / len(reviews), 1)  # rounded like catalog search


def product_facts(session: Session, handle: str, today: Optional[date] = None) -> Optional[ProductFacts]:
    """Everything a shopper may ask about one product, or None for an unknown (or unpublished) handle."""
    product = _published_product(session, handle)
    if product is None:
        return None
    variants = _sorted_variants(product.variants)
    in_stock: Dict[str, List[str]] = {}
    for v in variants:
        if v.stock > 0:
            in_stock.setdefault(v.color, [])
            if v.size:
                in_stock[v.color].append(v.size)
    prices = [v.price_cents for v in variants] or [0]
    sale = [v.compare_at_price_cents for v in variants
            if v.compare_at_price_cents and v.compare_at_price_cents > v.price_cents]
    reviews = list(product.reviews)
    best = _best_review(reviews, positive=True)
    return ProductFacts(
        handle=product.handle,
        title=product.title,
        brand=product.brand.name if product.brand else "",
        category=product.category.name if product.category else "",
        product_type=product.product_type or "",
        material=product.material or "",
        gender=product.gender or "",
        description=product.description or "",
        price_min_cents=min(prices),
        price_max_cents=max(prices),
        compare_at_price_cents=max(sale) if sale else None,
        colors=tuple(dict.fromkeys(v.color for v in variants if v.color)),
        sizes=tuple(sorted(dict.fromkeys(v.size for v in variants if v.size), key=size_sort_key)),
        variants_in_stock={color: tuple(sizes) for color, sizes in in_stock.items()},
        out_of_stock=tuple(_variant_label(v) for v in variants if v.stock <= 0),
        total_stock=sum(max(0, v.stock) for v in variants),
        rating=_rating(reviews),
        review_count=len(reviews),
        review_excerpt=_excerpt(best).text if best else None,
        delivery=delivery_estimate("standard", today),
        express_delivery=delivery_estimate("express", today),
    )


# --------------------------------------------------------------------------------------------
# Variant availability
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VariantStock:
    color: str
    size: str
    stock: int
    price_cents: int
    sku: Optional[str]

    @property
    def label(self) -> str:
        return " / ".join(p for p in (self.color, self.size) if p) or "Default"


@dataclass(frozen=True)
class Availability:
    """The answer to "do you have it in red, size M?".

    `color` / `size` are the catalog's spelling when they matched, else the normalised request.
    `exists`: some variant has every asked option. `in_stock`/`stock`: over those variants.
    `other_sizes`: sizes in stock in the asked colour (any colour when none was asked), nearest
    to the asked size first, without the asked size. `other_colors`: colours in stock in the
    asked size (any size when none was asked), without the asked colour.
    """
    handle: str
    title: str
    found: bool  # the product exists (and is published)
    color: Optional[str]
    size: Optional[str]
    color_offered: bool  # the product comes in that colour at all (True when no colour was asked)
    size_offered: bool
    exists: bool
    in_stock: bool
    stock: int
    variants: Tuple[VariantStock, ...]  # the variants with every asked option, in stock or not
    other_sizes: Tuple[str, ...]
    other_colors: Tuple[str, ...]
    colors: Tuple[str, ...]  # every colour offered
    sizes: Tuple[str, ...]  # every size offered

    @property
    def url_path(self) -> str:
        return f"/products/{self.handle}"


def variant_availability(
    session: Session, handle: str, color: Optional[str] = None, size: Optional[str] = None
) -> Availability:
    product = _published_product(session, handle)
    asked_color = normalise_color(color) or None
    asked_size = normalise_size(size) or None
    if product is None:
        return Availability((handle or "").strip().lower(), "", False, asked_color, asked_size, False, False,
                            False, False, 0, (), (), (), (), ())
    variants = _sorted_variants(product.variants)
    colors = tuple(dict.fromkeys(v.color for v in variants if v.color))
    sizes = tuple(sorted(dict.fromkeys(v.size for v in variants if v.size), key=size_sort_key))

    def color_is(v: Variant) -> bool:
        return asked_color is None or normalise_color(v.color) == asked_color

    def size_is(v: Variant) -> bool:
        return asked_size is None or normalise_size(v.size).lower() == asked_size.lower()

    # Report the catalog's own spelling of what matched.
    shown_color = next((v.color for v in variants if asked_color and color_is(v)), asked_color)
    shown_size = next((v.size for v in variants if asked_size and size_is(v)), asked_size)
    matching = [v for v in variants if color_is(v) and size_is(v)]
    stock = sum(max(0, v.stock) for v in matching)

    size_pool = [v for v in variants if v.stock > 0 and color_is(v) and not (asked_size and size_is(v))]
    other_sizes = list(dict.fromkeys(v.size for v in size_pool if v.size))
    if asked_size:
        other_sizes.sort(key=lambda s: (_size_distance(s, asked_size), size_sort_key(s)))
    else:
        other_sizes.sort(key=size_sort_key)
    color_pool = [v for v in variants if v.stock > 0 and size_is(v) and not (asked_color and color_is(v))]
    other_colors = tuple(dict.fromkeys(v.color for v in color_pool if v.color))

    return Availability(
        handle=product.handle,
        title=product.title,
        found=True,
        color=shown_color,
        size=shown_size,
        color_offered=any(color_is(v) for v in variants),
        size_offered=any(size_is(v) for v in variants),
        exists=bool(matching),
        in_stock=stock > 0,
        stock=stock,
        variants=tuple(VariantStock(v.color, v.size, max(0, v.stock), v.price_cents, v.sku) for v in matching),
        other_sizes=tuple(other_sizes),
        other_colors=other_colors,
        colors=colors,
        sizes=sizes,
    )


# --------------------------------------------------------------------------------------------
# Review summary
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewSummary:
    handle: str
    title: str
    average: Optional[float]  # one decimal; None without reviews
    count: int
    distribution: Mapping[int, int]  # stars (5..1) -> number of reviews, every key present
    positive: Optional[ReviewExcerpt]  # best recent review rated 4-5
    critical: Optional[ReviewExcerpt]  # lowest recent review rated 1-3


def review_summary(session: Session, handle: str) -> Optional[ReviewSummary]:
    """Average, count, star distribution and one praise / one criticism, or None for an unknown product."""
    product = _published_product(session, handle)
    if product is None:
        return None
    rows = session.execute(
        select(Review.rating, func.count(Review.id)).where(Review.product_id == product.id).group_by(Review.rating)
    ).all()
    distribution = {stars: 0 for stars in (5, 4, 3, 2, 1)}
    for rating, count in rows:
        distribution[int(rating)] = int(count)
    count = sum(distribution.values())
    average = round(sum(s * n for s, n in distribution.items()) / count, 1) if count else None
    reviews = list(product.reviews)
    positive = _best_review(reviews, positive=True)
    critical = _best_review(reviews, positive=False)
    return ReviewSummary(
        handle=product.handle,
        title=product.title,
        average=average,
        count=count,
        distribution=distribution,
        positive=_excerpt(positive) if positive else None,
        critical=_excerpt(critical) if critical else None,
    )
