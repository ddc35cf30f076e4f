"""Catalog search in the conversation: new searches, refinements, paging and narrowing."""
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.presentation import show_products
from actions.settings import SEARCH_RESULTS_PER_PAGE
from actions.shop_errors import say_shop_data_unavailable
from shop.catalog import (
    SearchFilters,
    SearchResult,
    facets,
    format_price,
    most_useful_question,
    search_with_relaxation,
    summaries_for_handles,
)
from shop.db import session_scope

logger = logging.getLogger(__name__)

FILTER_SLOTS = ("category", "color", "size", "brand", "material", "gender", "price_min", "price_max", "sort")
# What the narrowing form asks for, by the name most_useful_question() gives it.
NARROWING_SLOTS = {"size": "size", "color": "color", "budget": "price_max"}
NO_PREFERENCE = "any"
PRICE_PATTERN = re.compile(r"\d+(?:[.,]\d{1,2})?")
CHEAPER_PATTERN = re.compile(r"\b(cheaper|less expensive|lower price|more affordable)\b", re.IGNORECASE)
# Entity values longer than any real filter are noise (or an attack), not a filter.
MAX_FILTER_LENGTH = 60
# Beyond this many matches a fresh search asks one narrowing question first.
NARROW_ABOVE = 40
RELAXED_WORDS = {
    "color": "the exact colour",
    "size": "the size",
    "brand": "the brand",
    "material": "the material",
    "price": "the budget",
    "price_widened": "the budget a little",
    "gender": "who it's for",
    "category": "the kind of product",
}
ASK_WHAT_TO_SEARCH = (
    "Sure! What are you looking for? Tell me a kind of product, a colour, a size and a budget, "
    'like "blue jeans under $60".'
)


def price_to_cents(value: Any) -> Optional[int]:
    """'$80', '80 dollars', '79.99' -> cents; anything without a usable amount -> None."""
    match = PRICE_PATTERN.search(str(value or ""))
    if not match:
        return None
    return round(float(match.group(0).replace(",", ".")) * 100)


def clean_filter(value: Any) -> Optional[Text]:
    if value is None:
        return None
    text = str(value).strip()[:MAX_FILTER_LENGTH]
    if not text or text.lower() == NO_PREFERENCE:
        return None
    return text


def filters_from_slots(tracker: Tracker, page: int = 0) -> SearchFilters:
    values = {slot: clean_filter(tracker.get_slot(slot)) for slot in FILTER_SLOTS}
    price_min = price_to_cents(values["price_min"])
    price_max = price_to_cents(values["price_max"])
    if price_min is not None and price_max is not None and price_min > price_max:
        price_min, price_max = price_max, price_min
    return SearchFilters(
        category=values["category"],
        color=values["color"].lower() if values["color"] else None,
        size=values["size"],
        brand=values["brand"],
        material=values["material"],
        gender=values["gender"],
        price_min_cents=price_min,
        price_max_cents=price_max,
        sort=values["sort"] or "relevance",
        in_stock_only=True,
        limit=SEARCH_RESULTS_PER_PAGE,
        offset=page * SEARCH_RESULTS_PER_PAGE,
    )


def describe(filters: SearchFilters) -> Text:
    """'red sneakers in size 42 by Stride under $80' from the filters in force."""
    words = [filters.color or "", filters.material or "", filters.category or "products"]
    text = " ".join(w for w in words if w)
    if filters.gender:
        text += f" for {filters.gender}"
    if filters.size:
        text += f" in size {filters.size}"
    if filters.brand:
        text += f" by {filters.brand}"
    if filters.price_min_cents is not None and filters.price_max_cents is not None:
        text += f" between {format_price(filters.price_min_cents)} and {format_price(filters.price_max_cents)}"
    elif filters.price_max_cents is not None:
        text += f" under {format_price(filters.price_max_cents)}"
    elif filters.price_min_cents is not None:
        text += f" over {format_price(filters.price_min_cents)}"
    return text.replace(".00", "")


def preferred_size(tracker: Tracker, sizes_in_stock: List[Text]) -> Optional[Text]:
    """The size the shopper said they wear, if the products at hand come in it."""
    preferences = tracker.get_slot("preferences") or {}
    for key in ("shoe_size", "size"):
        wanted = str(preferences.get(key) or "").lower()
        match = next((size for size in sizes_in_stock if size.lower() == wanted), None)
        if match:
            return match
    return None


def _latest_intent(tracker: Tracker) -> Text:
    return (tracker.latest_message.get("intent") or {}).get("name") or ""


def _mentioned_filters(tracker: Tracker) -> Dict[Text, Any]:
    return {
        e["entity"]: e.get("value")
        for e in tracker.latest_message.get("entities", [])
        if e.get("entity") in FILTER_SLOTS and not e.get("role")
    }


class ActionSearchProducts(Action):
    """One action for every way of searching, so the results always reflect the slots."""

    def name(self) -> Text:
        return "action_search_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        intent = _latest_intent(tracker)
        events: List[Dict[Text, Any]] = []
        page = 0
        if intent == "search_product":
            # A new search starts over: only what this message says counts.
            mentioned = _mentioned_filters(tracker)
            if not mentioned:
                dispatcher.utter_message(text=ASK_WHAT_TO_SEARCH)
                return [SlotSet("search_outcome", "shown")]
            for slot in FILTER_SLOTS:
                value = mentioned.get(slot)
                if tracker.get_slot(slot) != value:
                    events.append(SlotSet(slot, value))
            filters = filters_from_slots(_with_slots(tracker, events))
        elif intent == "show_more":
            page = int(tracker.get_slot("search_page") or 0) + 1
            filters = filters_from_slots(tracker, page)
        else:
            filters = filters_from_slots(tracker)
            if intent == "refine_search" and CHEAPER_PATTERN.search(tracker.latest_message.get("text") or ""):
                events.extend(self._cheaper(tracker))
                filters = filters_from_slots(_with_slots(tracker, events))

        if not any((filters.category, filters.color, filters.size, filters.brand, filters.material,
                    filters.gender, filters.price_min_cents, filters.price_max_cents)):
            dispatcher.utter_message(text=ASK_WHAT_TO_SEARCH)
            return events + [SlotSet("search_outcome", "shown")]

        try:
            with session_scope() as session:
                result = search_with_relaxation(session, filters)
                question = None
                if intent == "search_product" and not result.relaxed and result.total > NARROW_ABOVE:
                    counts = facets(session, filters)
                    question = most_useful_question(filters, counts)
                    preferred = preferred_size(tracker, [size for size, _ in counts.sizes])
                    if question == "size" and preferred:
                        # The shopper told us their size earlier: use it instead of asking again.
                        filters = replace(filters, size=preferred)
                        result = search_with_relaxation(session, filters)
                        events.append(SlotSet("size", preferred))
                        question = None
        except SQLAlchemyError:
            logger.exception("Catalog search failed")
            say_shop_data_unavailable(dispatcher)
            return events + [SlotSet("search_outcome", "shown")]

        if question in NARROWING_SLOTS:
            dispatcher.utter_message(text=f"I have {result.total} {describe(filters)} in stock.")
            return events + [
                SlotSet("narrowing_filter", NARROWING_SLOTS[question]),
                SlotSet("search_outcome", "too_many"),
            ]

        self._announce(dispatcher, tracker, result, filters, page)
        return events + [
            SlotSet("search_page", page),
            SlotSet("shown_products", [p.handle for p in result.products]),
            SlotSet("search_outcome", "shown"),
            SlotSet("narrowing_filter", None),
        ]

    @staticmethod
    def _cheaper(tracker: Tracker) -> List[Dict[Text, Any]]:
        """'Cheaper': below the cheapest price just shown, most expensive of those first."""
        shown = tracker.get_slot("shown_products") or []
        if not shown:
            return [SlotSet("sort", "price_asc")]
        with session_scope() as session:
            prices = [p.price_cents for p in summaries_for_handles(session, shown)]
        if not prices:
            return [SlotSet("sort", "price_asc")]
        return [SlotSet("price_max", f"{(min(prices) - 1) / 100:.2f}"), SlotSet("sort", "price_desc")]

    @staticmethod
    def _announce(
        dispatcher: CollectingDispatcher, tracker: Tracker, result: SearchResult, filters: SearchFilters, page: int
    ) -> None:
        wanted = describe(filters)
        if not result.products:
            if page:
                dispatcher.utter_message(text=f"That's all the {wanted} I have. Want to change a filter?")
            else:
                dispatcher.utter_message(
                    text=f"I couldn't find any {wanted}. Try another colour, a higher budget or a different kind of product."
                )
            return
        if result.relaxed:
            dropped = " and ".join(RELAXED_WORDS.get(name, name) for name in result.relaxed)
            intro = f"I couldn't find any {wanted}, so I relaxed {dropped}. These are the closest:"
        elif page:
            first = page * SEARCH_RESULTS_PER_PAGE + 1
            intro = f"Here are {wanted} {first}-{first + len(result.products) - 1} of {result.total}:"
        elif result.total > len(result.products):
            intro = f"I found {result.total} {wanted}. Here are the top {len(result.products)}:"
        else:
            intro = f"I found {result.total} {wanted}:"
        more = result.total > page * SEARCH_RESULTS_PER_PAGE + len(result.products)
        show_products(dispatcher, tracker, intro, result.products, offer_more=more and not result.relaxed)


def _with_slots(tracker: Tracker, events: List[Dict[Text, Any]]) -> Tracker:
    """The tracker as it will be once these slot events are applied."""
    slots = dict(tracker.slots)
    for event in events:
        slots[event["name"]] = event["value"]
    return Tracker(
        tracker.sender_id, slots, tracker.latest_message, tracker.events, tracker.is_paused(),
        tracker.followup_action, tracker.active_loop, tracker.latest_action_name,
    )


class ActionAskNarrowingFilter(Action, ABC):
    """Asks for the filter the form needs, offering the values that are actually in stock."""

    slot: Text = ""
    question: Text = ""

    def name(self) -> Text:
        return f"action_ask_{self.slot}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        filters = filters_from_slots(tracker)
        try:
            with session_scope() as session:
                counts = facets(session, filters)
        except SQLAlchemyError:
            logger.exception("Facet query failed")
            counts = None
        buttons = self.buttons(counts) if counts else []
        buttons.append({"title": "Doesn't matter", "payload": "/no_preference"})
        dispatcher.utter_message(text=self.question, buttons=buttons)
        return []

    @abstractmethod
    def buttons(self, counts) -> List[Dict[Text, Text]]:
        """One button per value in stock, with how many products have it."""


class ActionAskSize(ActionAskNarrowingFilter):
    slot = "size"
    question = "Which size do you need? These are in stock:"

    def buttons(self, counts) -> List[Dict[Text, Text]]:
        return [{"title": f"{size} ({n})", "payload": f"size {size}"} for size, n in counts.sizes[:8]]


class ActionAskColor(ActionAskNarrowingFilter):
    slot = "color"
    question = "Any colour in mind? These are in stock:"

    def buttons(self, counts) -> List[Dict[Text, Text]]:
        return [{"title": f"{color} ({n})", "payload": color} for color, n in counts.colors[:8]]


class ActionAskPriceMax(ActionAskNarrowingFilter):
    slot = "price_max"
    question = "What's your budget?"

    def buttons(self, counts) -> List[Dict[Text, Text]]:
        return [
            {"title": f"Under {format_price(limit).replace('.00', '')} ({n})",
             "payload": f"under {format_price(limit).replace('.00', '')}"}
            for limit, n in counts.price_bands[:5]
        ]


class ValidateNarrowSearchForm(FormValidationAction):
    """Asks only the one filter chosen by the search, and checks the answer against the catalog."""

    def name(self) -> Text:
        return "validate_narrow_search_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        wanted = tracker.get_slot("narrowing_filter")
        return [wanted] if wanted in domain_slots else []

    def _no_preference(self, slot: Text, tracker: Tracker) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") == slot and _latest_intent(tracker) == "no_preference":
            return {slot: NO_PREFERENCE}
        return {}

    async def extract_size(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("size", tracker)

    async def extract_color(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("color", tracker)

    async def extract_price_max(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("price_max", tracker)

    async def validate_price_max(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        if value == NO_PREFERENCE:
            return {"price_max": value}
        cents = price_to_cents(value)
        if cents is None or cents <= 0:
            dispatcher.utter_message(text="Sorry, I need a budget as an amount, like \"under $60\".")
            return {"price_max": None}
        return {"price_max": value}

    async def validate_size(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._validate_facet("size", value, dispatcher, tracker, lambda c: [s for s, _ in c.sizes])

    async def validate_color(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._validate_facet("color", value, dispatcher, tracker, lambda c: [s for s, _ in c.colors])

    def _validate_facet(self, slot, value, dispatcher, tracker, available_of) -> Dict[Text, Any]:
        if value == NO_PREFERENCE:
            return {slot: value}
        filters = filters_from_slots(tracker)
        with session_scope() as session:
            available = available_of(facets(session, _without(filters, slot)))
        match = next((a for a in available if a.lower() == str(value).strip().lower()), None)
        if match is None:
            listed = ", ".join(available[:10]) or "none"
            dispatcher.utter_message(
                text=f"Sorry, I have no {describe(_without(filters, slot))} in {slot} {value}. In stock: {listed}."
            )
            return {slot: None}
        return {slot: match}


def _without(filters: SearchFilters, slot: Text) -> SearchFilters:
    field = {"price_max": "price_max_cents"}.get(slot, slot)
    return replace(filters, **{field: None})
