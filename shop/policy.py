"""The shop's policies and FAQ facts, loaded from one editable YAML file (shop/policies.yml).

`load_policy()` reads and checks the file (a clear `PolicyError` naming the file, the setting and
the problem when it is malformed) and returns typed, immutable objects. The same objects drive
the rules (return window, final sale, shipping costs, tracking links) and the plain-text answers
the assistant gives (`return_policy_text()`, `faq_answer(topic, region, method)`), so the chat can
never promise something the rules refuse.

The file is re-read when its modification time changes, so an edit takes effect without a restart.
Set SHOP_POLICY_FILE to use another file.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

import yaml

from shop.settings import absolute_url, shop_settings

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policies.yml"

__all__ = [
    "AccountHelp", "ContactInfo", "FAQ_TOPICS", "FinalSaleRule", "Policy", "PolicyError", "Region",
    "RefundPolicy", "ReturnPolicy", "ShippingMethod", "ShippingPolicy", "UnknownTopic",
    "countries_text", "contact_text", "create_account_text", "delivery_time_text", "faq_answer",
    "format_money", "load_policy", "parse_policy", "payment_methods_text", "policy_path",
    "recover_password_text", "refund_timing_text", "return_policy_text", "shipping_options_text",
]


class PolicyError(ValueError):
    """The policy file is missing or malformed; the message names the file and the problem."""


class UnknownTopic(ValueError):
    """`faq_answer` was asked about a topic it has no answer for."""

    def __init__(self, topic: str):
        self.topic = topic
        super().__init__(f"no FAQ answer for topic {topic!r}; known topics: {', '.join(FAQ_TOPICS)}")


# --------------------------------------------------------------------------------------------
# Typed policy objects
# --------------------------------------------------------------------------------------------

DayRange = Tuple[int, int]


def _days(days: DayRange) -> str:
    low, high = days
    return f"{low} business day{'s' if low != 1 else ''}" if low == high else f"{low}-{high} business days"


def format_money(cents: int) -> str:
    symbol = shop_settings().currency_symbol
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{symbol}{cents // 100:,}.{cents % 100:02d}"


def _tag_set(tags: Any) -> set:
    if tags is None:
        return set()
    if isinstance(tags, str):
        tags = tags.split(",")
    return {str(t).strip().lower() for t in tags if str(t).strip()}


@dataclass(frozen=True)
class FinalSaleRule:
    categories: Tuple[str, ...]
    tags: Tuple[str, ...]
    explanation: str

    def reason(self, category: Optional[str], tags: Any = None) -> Optional[str]:
        """Why an item with this category and tags (list or 'a, b' string) is final sale, else None."""
        if category and category.strip().lower() in {c.lower() for c in self.categories}:
            return f"{category.strip()} items are final sale"
        matched = sorted(_tag_set(tags) & {t.lower() for t in self.tags})
        if matched:
            return "clearance items are final sale" if "clearance" in matched else f"items tagged '{matched[0]}' are final sale"
        return None


@dataclass(frozen=True)
class ReturnPolicy:
    window_days: int
    final_sale: FinalSaleRule
    condition: Tuple[str, ...]
    damaged_or_wrong: str
    return_shipping: Mapping[str, str]  # region key -> "shop" | "customer"
    resolutions: Tuple[str, ...]
    label_path: str
    how_to: str

    def label_url(self, rma_number: str) -> str:
        return absolute_url(self.label_path.replace("{rma}", quote(rma_number, safe="")))

    def shop_pays_return_shipping(self, region_key: str) -> bool:
        return self.return_shipping.get(region_key) == "shop"


@dataclass(frozen=True)
class RefundPolicy:
    method: str
    processing_business_days: int
    bank_business_days: DayRange
    cancellation_business_days: DayRange
    shipping_refunded: bool
    store_credit: str
    exchange: str


@dataclass(frozen=True)
class ShippingMethod:
    key: str
    label: str
    cost_cents: int


@dataclass(frozen=True)
class Region:
    key: str
    label: str
    countries: Tuple[str, ...]
    aliases: Tuple[str, ...]
    delivery_business_days: Mapping[str, DayRange]


@dataclass(frozen=True)
class ShippingPolicy:
    free_shipping_over_cents: int
    free_shipping_methods: Tuple[str, ...]
    methods: Mapping[str, ShippingMethod]
    regions: Mapping[str, Region]
    countries: Mapping[str, str]  # ISO code -> name
    country_aliases: Mapping[str, str]  # lower-case alias -> ISO code
    dispatch: str

    def region_for_country(self, country_code: str) -> Optional[Region]:
        code = (country_code or "").strip().upper()
        for region in self.regions.values():
            if code in region.countries:
                return region
        return None

    def ships_to(self, country_code: str) -> bool:
        return self.region_for_country(country_code) is not None

    def resolve_country(self, text: str) -> Optional[str]:
        """'uk', 'United Kingdom', 'gb' -> 'GB'; None when the place is not a country we know."""
        key = _plain(text)
        if not key:
            return None
        if key.upper() in self.countries:
            return key.upper()
        for code, name in self.countries.items():
            if _plain(name) == key:
                return code
        return self.country_aliases.get(key)

    def resolve_region(self, text: str) -> Optional[Region]:
        """A region key, alias, country code or country name -> the shipping region, else None."""
        key = _plain(text)
        if not key:
            return None
        for region in self.regions.values():
            if key == region.key or key in region.aliases or key == _plain(region.label):
                return region
        code = self.resolve_country(key)
        return self.region_for_country(code) if code else None

    def resolve_method(self, text: str) -> Optional[ShippingMethod]:
        key = _plain(text)
        for method in self.methods.values():
            if key in (method.key, method.label.lower(), f"{method.key} shipping", f"{method.key} delivery"):
                return method
        return None

    def shipping_cost_cents(self, method: str, merchandise_cents: int, free_shipping_code: bool = False) -> int:
        """What a shopper pays to ship an order worth `merchandise_cents` (after discounts)."""
        chosen = self.methods[method]
        if method in self.free_shipping_methods and (
            free_shipping_code or merchandise_cents >= self.free_shipping_over_cents
        ):
            return 0
        return chosen.cost_cents


@dataclass(frozen=True)
class ContactInfo:
    email: str
    phone: str
    hours: str
    response_time: str


@dataclass(frozen=True)
class AccountHelp:
    path: str
    steps: Tuple[str, ...]
    note: str

    @property
    def url(self) -> str:
        return absolute_url(self.path)


@dataclass(frozen=True)
class Policy:
    version: int
    returns: ReturnPolicy
    refunds: RefundPolicy
    shipping: ShippingPolicy
    carriers: Mapping[str, str]  # carrier name -> tracking URL template with {tracking}
    payment_methods: Tuple[str, ...]
    contact: ContactInfo
    create_account: AccountHelp
    recover_password: AccountHelp
    source: str

    def tracking_url(self, carrier: Optional[str], tracking_number: Optional[str]) -> Optional[str]:
        if not carrier or not tracking_number:
            return None
        for name, template in self.carriers.items():
            if name.lower() == carrier.strip().lower():
                return template.replace("{tracking}", quote(tracking_number.strip(), safe=""))
        return None

    def final_sale_reason(self, category: Optional[str], tags: Any = None) -> Optional[str]:
        return self.returns.final_sale.reason(category, tags)


def _plain(text: Optional[str]) -> str:
    value = " ".join(str(text or "").strip().lower().split())
    if value.startswith("the "):
        value = value[4:]
    return value


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

class _Node:
    """A mapping in the file plus its dotted path, with typed getters that fail with clear messages."""

    def __init__(self, data: Any, path: str, source: str, known: Sequence[str]):
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail(f"{path or 'the file'} must be a mapping of settings, got {_kind(data)}")
        self.data = data
        unknown = [str(k) for k in data if k not in known]
        if unknown:
            where = f"{path}." if path else ""
            self.fail(f"unknown setting {where}{unknown[0]} (expected one of: {', '.join(known)})")

    def fail(self, problem: str):
        raise PolicyError(f"{self.source}: {problem}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, required: bool = True) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(f"{self.name(key)} is missing")
            return None
        return self.data[key]

    def node(self, key: str, known: Sequence[str]) -> "_Node":
        return _Node(self.raw(key), self.name(key), self.source, known)

    def text(self, key: str, required: bool = True) -> str:
        value = self.raw(key, required)
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{self.name(key)} must be a non-empty text, got {_kind(value)}")
        return " ".join(value.split()) if "\n" in value else value.strip()

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{self.name(key)} must be a whole number of at least {minimum}, got {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            self.fail(f"{self.name(key)} must be true or false, got {value!r}")
        return value

    def texts(self, key: str, allow_empty: bool = False) -> Tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or (not value and not allow_empty):
            self.fail(f"{self.name(key)} must be a list of texts, got {_kind(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{self.name(key)}[{index}] must be a non-empty text, got {item!r}")
        return tuple(" ".join(item.split()) for item in value)

    def day_range(self, key: str, value: Any = None, name: Optional[str] = None) -> DayRange:
        value = self.raw(key) if value is None else value
        name = name or self.name(key)
        if (
            not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            self.fail(f"{name} must be a [min, max] pair of business days like [3, 5], got {value!r}")
        return (value[0], value[1])


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _country_code(node: _Node, key: Any, where: str) -> str:
    if not isinstance(key, str) or len(key) != 2 or not key.isalpha() or not key.isupper():
        hint = " (quote it, e.g. 'NO': YAML reads NO/YES/ON/OFF as true/false)" if isinstance(key, bool) else ""
        node.fail(f"{where}: {key!r} is not a 2-letter upper-case country code{hint}")
    return key


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Check a loaded YAML document and build the typed policy; PolicyError names any problem."""
    root = _Node(data, "", source, ("version", "returns", "refunds", "shipping", "carriers",
                                    "payment_methods", "contact", "account"))
    version = root.integer("version", minimum=1)

    # shipping first: return rules refer to its regions
    ship = root.node("shipping", ("free_shipping_over_cents", "free_shipping_methods", "methods", "regions",
                                  "countries", "country_aliases", "dispatch"))
    methods_node = ship.raw("methods")
    if not isinstance(methods_node, dict) or not methods_node:
        ship.fail("shipping.methods must be a mapping of method name -> {label, cost_cents}")
    methods: Dict[str, ShippingMethod] = {}
    for key in methods_node:
        if not isinstance(key, str):
            ship.fail(f"shipping.methods: {key!r} is not a method name")
        m = ship.node("methods", list(methods_node)).node(key, ("label", "cost_cents"))
        methods[key] = ShippingMethod(key=key, label=m.text("label"), cost_cents=m.integer("cost_cents"))
    free_methods = ship.texts("free_shipping_methods", allow_empty=True)
    for name in free_methods:
        if name not in methods:
            ship.fail(f"shipping.free_shipping_methods: {name!r} is not one of shipping.methods ({', '.join(methods)})")

    countries_raw = ship.raw("countries")
    if not isinstance(countries_raw, dict) or not countries_raw:
        ship.fail("shipping.countries must be a mapping of country code -> name, e.g. US: United States")
    countries: Dict[str, str] = {}
    for code, name in countries_raw.items():
        code = _country_code(ship, code, "shipping.countries")
        if not isinstance(name, str) or not name.strip():
            ship.fail(f"shipping.countries.{code} must be the country's name, got {name!r}")
        countries[code] = name.strip()

    regions_raw = ship.raw("regions")
    if not isinstance(regions_raw, dict) or not regions_raw:
        ship.fail("shipping.regions must be a mapping of region name -> settings")
    regions: Dict[str, Region] = {}
    seen_countries: Dict[str, str] = {}
    for key in regions_raw:
        r = ship.node("regions", list(regions_raw)).node(key, ("label", "countries", "aliases", "delivery_business_days"))
        codes = r.texts("countries")
        for code in codes:
            _country_code(r, code, f"shipping.regions.{key}.countries")
            if code not in countries:
                r.fail(f"shipping.regions.{key}.countries: {code} is not listed in shipping.countries")
            if code in seen_countries:
                r.fail(f"shipping.regions.{key}.countries: {code} is already in region {seen_countries[code]}")
            seen_countries[code] = key
        days_node = r.node("delivery_business_days", list(methods))
        days = {m: days_node.day_range(m) for m in methods if m in days_node.data}
        missing = [m for m in methods if m not in days]
        if missing:
            r.fail(f"shipping.regions.{key}.delivery_business_days.{missing[0]} is missing")
        aliases = tuple(_plain(a) for a in r.texts("aliases", allow_empty=True))
        regions[key] = Region(key=key, label=r.text("label"), countries=codes, aliases=aliases,
                              delivery_business_days=days)
    unplaced = [c for c in countries if c not in seen_countries]
    if unplaced:
        ship.fail(f"shipping.countries: {unplaced[0]} is in no shipping region (add it to one of shipping.regions)")

    aliases_raw = ship.raw("country_aliases", required=False) or {}
    if not isinstance(aliases_raw, dict):
        ship.fail("shipping.country_aliases must be a mapping of alias -> country code")
    country_aliases: Dict[str, str] = {}
    for alias, code in aliases_raw.items():
        if code not in countries:
            ship.fail(f"shipping.country_aliases.{alias}: {code!r} is not a code from shipping.countries")
        country_aliases[_plain(str(alias))] = code

    shipping = ShippingPolicy(
        free_shipping_over_cents=ship.integer("free_shipping_over_cents"),
        free_shipping_methods=free_methods, methods=methods, regions=regions, countries=countries,
        country_aliases=country_aliases, dispatch=ship.text("dispatch", required=False),
    )

    ret = root.node("returns", ("window_days", "final_sale", "condition", "damaged_or_wrong", "return_shipping",
                                "resolutions", "label_path", "how_to"))
    fs = ret.node("final_sale", ("categories", "tags", "explanation"))
    final_sale = FinalSaleRule(categories=fs.texts("categories", allow_empty=True),
                               tags=tuple(t.lower() for t in fs.texts("tags", allow_empty=True)),
                               explanation=fs.text("explanation"))
    rs = ret.node("return_shipping", list(regions))
    return_shipping: Dict[str, str] = {}
    for key in regions:
        payer = rs.raw(key)
        if payer not in ("shop", "customer"):
            ret.fail(f"returns.return_shipping.{key} must be 'shop' or 'customer', got {payer!r}")
        return_shipping[key] = payer
    resolutions = ret.texts("resolutions")
    for resolution in resolutions:
        if resolution not in ("refund", "exchange", "store_credit"):
            ret.fail(f"returns.resolutions: {resolution!r} is not one of refund, exchange, store_credit")
    label_path = ret.text("label_path")
    if "{rma}" not in label_path:
        ret.fail("returns.label_path must contain {rma}, where the return number goes")
    returns = ReturnPolicy(
        window_days=ret.integer("window_days", minimum=1), final_sale=final_sale,
        condition=ret.texts("condition", allow_empty=True), damaged_or_wrong=ret.text("damaged_or_wrong"),
        return_shipping=return_shipping, resolutions=resolutions, label_path=label_path,
        how_to=ret.text("how_to"),
    )

    ref = root.node("refunds", ("method", "processing_business_days", "bank_business_days",
                                "cancellation_business_days", "shipping_refunded", "store_credit", "exchange"))
    refunds = RefundPolicy(
        method=ref.text("method"), processing_business_days=ref.integer("processing_business_days"),
        bank_business_days=ref.day_range("bank_business_days"),
        cancellation_business_days=ref.day_range("cancellation_business_days"),
        shipping_refunded=ref.boolean("shipping_refunded"), store_credit=ref.text("store_credit"),
        exchange=ref.text("exchange"),
    )

    carriers_raw = root.raw("carriers")
    if not isinstance(carriers_raw, dict) or not carriers_raw:
        root.fail("carriers must be a mapping of carrier name -> tracking URL with {tracking}")
    carriers: Dict[str, str] = {}
    for name, template in carriers_raw.items():
        if not isinstance(template, str) or "{tracking}" not in template or not template.startswith(("http://", "https://")):
            root.fail(f"carriers.{name} must be an http(s) URL containing {{tracking}}, got {template!r}")
        carriers[str(name)] = template

    con = root.node("contact", ("email", "phone", "hours", "response_time"))
    contact = ContactInfo(email=con.text("email"), phone=con.text("phone"), hours=con.text("hours"),
                          response_time=con.text("response_time", required=False))
    if "@" not in contact.email:
        con.fail(f"contact.email must be an email address, got {contact.email!r}")

    acc = root.node("account", ("create", "recover_password"))
    helps = {}
    for key, extra in (("create", "benefits"), ("recover_password", "note")):
        a = acc.node(key, ("path", "steps", extra))
        path = a.text("path")
        if not path.startswith("/"):
            a.fail(f"account.{key}.path must be a path on the shop starting with /, got {path!r}")
        helps[key] = AccountHelp(path=path, steps=a.texts("steps"), note=a.text(extra, required=False))

    return Policy(
        version=version, returns=returns, refunds=refunds, shipping=shipping, carriers=carriers,
        payment_methods=root.texts("payment_methods"), contact=contact, create_account=helps["create"],
        recover_password=helps["recover_password"], source=source,
    )


def policy_path() -> Path:
    return Path(os.environ.get("SHOP_POLICY_FILE") or DEFAULT_POLICY_FILE)


_cache: Dict[str, Tuple[Tuple[int, int], Policy]] = {}
_cache_lock = threading.Lock()


def load_policy(path: Optional[os.PathLike] = None) -> Policy:
    """The policy from `path` (default: SHOP_POLICY_FILE or shop/policies.yml), re-read when the file changes."""
    file = Path(path) if path is not None else policy_path()
    try:
        stat = file.stat()
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read the policy file ({exc.strerror or exc})") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    key = str(file.resolve())
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{file}: cannot read the policy file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{file}: not valid YAML{where}: {problem}") from None
    policy = parse_policy(data, str(file))
    with _cache_lock:
        _cache[key] = (stamp, policy)
    return policy


# --------------------------------------------------------------------------------------------
# Plain-text answers (the chat shows them as they are; rich channels may add buttons)
# --------------------------------------------------------------------------------------------

def _join(items: Sequence[str], word: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _numbered(steps: Iterable[str]) -> str:
    return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def refund_timing_text(kind: str = "return", policy: Optional[Policy] = None) -> str:
    """When the money arrives: kind is 'return', 'cancellation' or 'store_credit'."""
    p = policy or load_policy()
    r = p.refunds
    bank = f"your bank may take another {_days(r.bank_business_days)} to show it"
    if kind == "cancellation":
        return (f"The refund goes back to {r.method} within {_days(r.cancellation_business_days)}; "
                f"{bank}.")
    if kind == "store_credit":
        return r.store_credit
    if kind == "exchange":
        return r.exchange
    if kind != "return":
        raise ValueError(f"unknown refund kind {kind!r}: use return, cancellation, store_credit or exchange")
    return (f"Refunds go back to {r.method} within {_days((r.processing_business_days,) * 2)} of your return "
            f"reaching our warehouse; {bank}.")


def return_policy_text(policy: Optional[Policy] = None) -> str:
    p = policy or load_policy()
    r = p.returns
    lines = [f"You can return most items within {r.window_days} days of delivery."]
    if r.condition:
        lines.append(" ".join(r.condition))
    lines.append(r.final_sale.explanation)
    free = [p.shipping.regions[k].label for k, v in r.return_shipping.items() if v == "shop"]
    paid = [p.shipping.regions[k].label for k, v in r.return_shipping.items() if v == "customer"]
    if free and not paid:
        lines.append("Returns are free: we send you a prepaid label.")
    elif free:
        lines.append(f"Returns from {_join(free)} are free with our prepaid label; "
                     f"from {_join(paid)} the return postage is paid by you.")
    else:
        lines.append("The return postage is paid by you.")
    lines.append(r.damaged_or_wrong)
    lines.append(refund_timing_text("return", p) + (
        "" if p.refunds.shipping_refunded else " Original shipping costs are not refunded."
    ))
    options = {"refund": "a refund", "exchange": "an exchange", "store_credit": "store credit"}
    lines.append(f"You can choose {_join([options[o] for o in r.resolutions], 'or')}. {r.how_to}")
    return "\n".join(lines)


def _method_or_note(p: Policy, method: Optional[str]) -> Tuple[List[ShippingMethod], str]:
    if not method:
        return list(p.shipping.methods.values()), ""
    found = p.shipping.resolve_method(method)
    if found:
        return [found], ""
    labels = _join([m.label for m in p.shipping.methods.values()], "and")
    return list(p.shipping.methods.values()), f"We don't offer {method.strip()} shipping; our options are {labels}. "


def _not_shipped_note(p: Policy, place: str) -> str:
    return f"Sorry, we don't ship to {place.strip()} yet. {countries_text(p)}"


def delivery_time_text(region: Optional[str] = None, method: Optional[str] = None,
                       policy: Optional[Policy] = None) -> str:
    p = policy or load_policy()
    methods, note = _method_or_note(p, method)
    if region:
        found = p.shipping.resolve_region(region)
        if not found:
            return _not_shipped_note(p, region)
        code = p.shipping.resolve_country(region)
        regions = [(p.shipping.countries[code] if code else found.label, found)]
    else:
        regions = [(r.label, r) for r in p.shipping.regions.values()]
    tail = f" {p.shipping.dispatch}" if p.shipping.dispatch else ""
    if len(regions) == 1 and len(methods) == 1:
        (place, r), m = regions[0], methods[0]
        return f"{note}{m.label} delivery to {place} takes {_days(r.delivery_business_days[m.key])}.{tail}"
    parts = []
    for place, r in regions:
        times = [f"{m.label.lower()} {_days(r.delivery_business_days[m.key])}" for m in methods]
        parts.append(f"To {place}: {_join(times)}.")
    return f"{note}{' '.join(parts)}{tail}"


def shipping_options_text(method: Optional[str] = None, region: Optional[str] = None,
                          policy: Optional[Policy] = None) -> str:
    p = policy or load_policy()
    if region and not p.shipping.resolve_region(region):
        return _not_shipped_note(p, region)
    methods, note = _method_or_note(p, method)
    region_obj = p.shipping.resolve_region(region) if region else None
    parts = []
    for m in methods:
        text = f"{m.label} shipping costs {format_money(m.cost_cents)}"
        if m.key in p.shipping.free_shipping_methods:
            text += f" (free on orders over {format_money(p.shipping.free_shipping_over_cents)})"
        if region_obj:
            text += f" and takes {_days(region_obj.delivery_business_days[m.key])} to {region_obj.label}"
        parts.append(text)
    return note + "; ".join(parts) + "."


def countries_text(policy: Optional[Policy] = None) -> str:
    p = policy or load_policy()
    return f"We ship to {_join(list(p.shipping.countries.values()))}."


def payment_methods_text(policy: Optional[Policy] = None) -> str:
    p = policy or load_policy()
    return f"We accept {_join(list(p.payment_methods))}."


def contact_text(policy: Optional[Policy] = None) -> str:
    c = (policy or load_policy()).contact
    text = f"You can reach our team by email at {c.email} or by phone at {c.phone} ({c.hours})."
    return f"{text} {c.response_time}" if c.response_time else text


def create_account_text(policy: Optional[Policy] = None) -> str:
    a = (policy or load_policy()).create_account
    text = f"To create an account, go to {a.url}:\n{_numbered(a.steps)}"
    return f"{text}\n{a.note}" if a.note else text


def recover_password_text(policy: Optional[Policy] = None) -> str:
    a = (policy or load_policy()).recover_password
    text = f"To reset your password, go to {a.url}:\n{_numbered(a.steps)}"
    return f"{text}\n{a.note}" if a.note else text


def _free_shipping_text(p: Policy) -> str:
    methods = _join([p.shipping.methods[m].label.lower() for m in p.shipping.free_shipping_methods], "and")
    if not methods:
        return "We don't offer free shipping at the moment."
    return (f"Free {methods} shipping on orders over {format_money(p.shipping.free_shipping_over_cents)} "
            f"(after discounts).")


_TOPICS = {
    "delivery_time": lambda p, region, method: delivery_time_text(region, method, p),
    "shipping_options": lambda p, region, method: shipping_options_text(method, region, p),
    "free_shipping": lambda p, region, method: _free_shipping_text(p),
    "countries": lambda p, region, method: _countries_answer(p, region, method),
    "payment_methods": lambda p, region, method: payment_methods_text(p),
    "contact": lambda p, region, method: contact_text(p),
    "create_account": lambda p, region, method: create_account_text(p),
    "recover_password": lambda p, region, method: recover_password_text(p),
    "return_policy": lambda p, region, method: return_policy_text(p),
    "refund_timing": lambda p, region, method: refund_timing_text("return", p),
}
FAQ_TOPICS: Tuple[str, ...] = tuple(_TOPICS)
_TOPIC_ALIASES = {
    "delivery": "delivery_time", "delivery_times": "delivery_time", "shipping_time": "delivery_time",
    "shipping": "shipping_options", "shipping_cost": "shipping_options", "shipping_costs": "shipping_options",
    "shipping_countries": "countries", "payment": "payment_methods", "contact_info": "contact",
    "account": "create_account", "reset_password": "recover_password", "forgot_password": "recover_password",
    "returns": "return_policy", "refunds": "refund_timing", "refund": "refund_timing",
}


def _countries_answer(p: Policy, region: Optional[str], method: Optional[str]) -> str:
    """'Do you ship to X?': yes with the delivery times, or no with the list of countries."""
    if not region or not region.strip():
        return countries_text(p)
    found = p.shipping.resolve_region(region)
    if not found:
        return _not_shipped_note(p, region)
    code = p.shipping.resolve_country(region)
    place = p.shipping.countries[code] if code else found.label
    return f"Yes, we ship to {place}. " + delivery_time_text(region, method, p)


def faq_answer(topic: str, region: Optional[str] = None, method: Optional[str] = None,
               policy: Optional[Policy] = None) -> str:
    """The plain-text answer to an FAQ topic (see FAQ_TOPICS); region/method narrow shipping answers.

    Raises UnknownTopic for a topic without an answer.
    """
    key = _plain(topic).replace(" ", "_").replace("-", "_")
    key = _TOPIC_ALIASES.get(key, key)
    if key not in _TOPICS:
        raise UnknownTopic(topic)
    p = policy or load_policy()
    return _TOPICS[key](p, region, method)
