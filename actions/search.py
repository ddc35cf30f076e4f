import logging
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError

from actions.presentation import channel_supports_cards, product_carousel, product_list_text
from actions.settings import SEARCH_RESULTS_PER_PAGE
from shop.catalog import SearchFilters, search_products
from shop.db import session_scope

logger = logging.getLogger(__name__)

PRICE_PATTERN = re.compile(r"\d+(?:[.,]\d{1,2})?")
# Entity values longer than any real filter are noise (or an attack), not a filter.
MAX_FILTER_LENGTH = 60
ASK_WHAT_TO_SEARCH = (
    "Sure! What are you looking for? Tell me a kind of product, a colour and a budget, "
    'like "blue jeans under $60".'
)
CATALOG_UNAVAILABLE = (
    "Sorry, I can't reach our product catalogue right now. Please try again in a minute."
)


def price_to_cents(value: Any) -> Optional[int]:
    """'$80', '80 dollars', '79.99' -> cents; anything without a usable amount -> None."""
    match = PRICE_PATTERN.search(str(value))
    if not match:
        return None
    return round(float(match.group(0).replace(",", ".")) * 100)


def _latest_entity(tracker: Tracker, name: Text) -> Optional[Text]:
    values = [str(v) for v in tracker.get_latest_entity_values(name) if v is not None]
    if not values:
        return None
    value = values[0].strip()
    return value[:MAX_FILTER_LENGTH] or None


def filters_from_message(tracker: Tracker) -> Optional[SearchFilters]:
    category = _latest_entity(tracker, "category")
    color = _latest_entity(tracker, "color")
    price_min = price_to_cents(_latest_entity(tracker, "price_min") or "")
    price_max = price_to_cents(_latest_entity(tracker, "price_max") or "")
    if not any((category, color, price_min is not None, price_max is not None)):
        return None
    if price_min is not None and price_max is not None and price_min > price_max:
        price_min, price_max = price_max, price_min
    return SearchFilters(
        category=category,
        color=color.lower() if color else None,
        price_min_cents=price_min,
        price_max_cents=price_max,
        limit=SEARCH_RESULTS_PER_PAGE,
    )


def describe(filters: SearchFilters) -> Text:
    words = [filters.color or "", filters.category or "products"]
    text = " ".join(w for w in words if w)
    if filters.price_min_cents is not None and filters.price_max_cents is not None:
        text += f" between ${filters.price_min_cents / 100:g} and ${filters.price_max_cents / 100:g}"
    elif filters.price_max_cents is not None:
        text += f" under ${filters.price_max_cents / 100:g}"
    elif filters.price_min_cents is not None:
        text += f" over ${filters.price_min_cents / 100:g}"
    return text


class ActionSearchProducts(Action):
    def name(self) -> Text:
        return "action_search_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        filters = filters_from_message(tracker)
        if filters is None:
            dispatcher.utter_message(text=ASK_WHAT_TO_SEARCH)
            return []
        try:
            with session_scope() as session:
                result = search_products(session, filters)
        except SQLAlchemyError:
            logger.exception("Catalog search failed")
            dispatcher.utter_message(text=CATALOG_UNAVAILABLE)
            return []

        wanted = describe(filters)
        if not result.products:
            dispatcher.utter_message(
                text=f"I couldn't find any {wanted}. Try another colour, a higher budget or a different kind of product."
            )
            return [SlotSet("shown_products", [])]

        shown = len(result.products)
        intro = (
            f"I found {result.total} {wanted}. Here are the top {shown}:"
            if result.total > shown
            else f"I found {result.total} {wanted}:"
        )
        if channel_supports_cards(tracker):
            dispatcher.utter_message(text=intro)
            dispatcher.utter_message(attachment=product_carousel(result.products))
        else:
            dispatcher.utter_message(text=f"{intro}\n{product_list_text(result.products)}")
        return [SlotSet("shown_products", [p.handle for p in result.products])]
