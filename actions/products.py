"""Questions about one product: details, stock of a variant, reviews; with a cross-sell suggestion."""
import logging
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.presentation import channel_supports_cards, price_text, product_carousel
from actions.references import resolve_reference
from actions.shop_errors import say_shop_data_unavailable
from shop.catalog import ProductSummary, format_price, summaries_for_handles
from shop.db import session_scope
from shop.products import (
    Availability,
    DeliveryEstimate,
    ProductFacts,
    product_facts,
    review_summary,
    variant_availability,
)
from shop.recommendations import better_alternative, frequently_bought_together
from shop.settings import absolute_url

logger = logging.getLogger(__name__)

ORDINALS = ("first", "second", "third", "fourth", "fifth")


def _entity(tracker: Tracker, name: Text) -> Optional[Text]:
    value = next(tracker.get_latest_entity_values(name), None)
    return str(value).strip()[:40] if value else None


def _money(cents: int) -> Text:
    return format_price(cents).replace(".00", "")


def delivery_text(estimate: DeliveryEstimate) -> Text:
    return f"{estimate.earliest:%a %d %b} - {estimate.latest:%a %d %b}"


def stock_text(facts: ProductFacts) -> Text:
    if not facts.variants_in_stock:
        return "It's sold out in every size and colour right now."
    parts = []
    for color, sizes in facts.variants_in_stock.items():
        label = color or "one colour"
        real_sizes = [s for s in sizes if s]
        parts.append(f"{label} ({', '.join(real_sizes)})" if real_sizes else label)
    return "In stock: " + "; ".join(parts) + "."


def details_text(facts: ProductFacts) -> Text:
    price = _money(facts.price_min_cents)
    if facts.price_max_cents != facts.price_min_cents:
        price = f"{price} - {_money(facts.price_max_cents)}"
    if facts.compare_at_price_cents:
        price += f" (was {_money(facts.compare_at_price_cents)})"
    lines = [f"{facts.title} by {facts.brand}: {price}."]
    if facts.material:
        lines.append(f"Material: {facts.material}.")
    lines.append(stock_text(facts))
    if facts.review_count:
        rated = f"Rated {facts.rating:.1f}/5 from {facts.review_count} reviews"
        lines.append(f'{rated}: "{facts.review_excerpt}"' if facts.review_excerpt else f"{rated}.")
    else:
        lines.append("No reviews yet.")
    lines.append(
        f"Order today and it arrives {delivery_text(facts.delivery)} with standard shipping, "
        f"or {delivery_text(facts.express_delivery)} with express."
    )
    lines.append(f"Product page: {absolute_url(facts.url_path)}")
    return "\n".join(lines)


class ProductAction(Action, ABC):
    """Finds the product meant, then answers about it; asks which one when that is unclear."""

    by_description = True

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        shown_handles = tracker.get_slot("shown_products") or []
        try:
            with session_scope() as session:
                shown = summaries_for_handles(session, shown_handles)
                handle = resolve_reference(tracker, shown, by_description=self.by_description)
                if handle is None:
                    self._ask_which(dispatcher, shown)
                    return []
                answered = self.answer(session, dispatcher, tracker, handle)
        except SQLAlchemyError:
            logger.exception("Product question failed")
            say_shop_data_unavailable(dispatcher)
            return []
        return [SlotSet("current_product", handle)] if answered else []

    @staticmethod
    def _ask_which(dispatcher: CollectingDispatcher, shown: List[ProductSummary]) -> None:
        if not shown:
            dispatcher.utter_message(
                text="Which product do you mean? Tell me what you're looking for and I'll show you some first."
            )
            return
        dispatcher.utter_message(
            text="Which one do you mean?",
            buttons=[
                {"title": p.title, "payload": f"tell me more about the {ORDINALS[i]} one"}
                for i, p in enumerate(shown[: len(ORDINALS)])
            ],
        )

    @abstractmethod
    def answer(self, session: Session, dispatcher: CollectingDispatcher, tracker: Tracker, handle: Text) -> bool:
        """Answers about the product; False when it no longer exists."""


class ActionProductDetails(ProductAction):
    def name(self) -> Text:
        return "action_product_details"

    def answer(self, session, dispatcher, tracker, handle) -> bool:
        facts = product_facts(session, handle)
        if facts is None:
            dispatcher.utter_message(text="Sorry, that product is no longer in our catalogue.")
            return False
        if channel_supports_cards(tracker):
            dispatcher.utter_message(attachment=product_carousel(summaries_for_handles(session, [handle])))
        dispatcher.utter_message(text=details_text(facts))
        suggest_more(session, dispatcher, handle)
        return True


def suggest_more(session: Session, dispatcher: CollectingDispatcher, handle: Text) -> None:
    """Cross-sell from what other shoppers bought with it, and a better-rated alternative."""
    together = frequently_bought_together(session, handle, limit=3)
    alternative = better_alternative(session, handle)
    lines = []
    if together:
        items = ", ".join(f"{p.title} ({price_text(p)})" for p in together)
        lines.append(f"Frequently bought together: {items}.")
    if alternative:
        lines.append(f"Also worth a look: {alternative.product.title} ({price_text(alternative.product)}), "
                     f"{alternative.reason}.")
    if lines:
        dispatcher.utter_message(text="\n".join(lines))


class ActionCheckAvailability(ProductAction):
    # "Do you have it in black?": the colour is the variant wanted, not a description of the product.
    by_description = False

    def name(self) -> Text:
        return "action_check_availability"

    def answer(self, session, dispatcher, tracker, handle) -> bool:
        availability = variant_availability(
            session, handle, color=_entity(tracker, "color"), size=_entity(tracker, "size")
        )
        if not availability.found:
            dispatcher.utter_message(text="Sorry, that product is no longer in our catalogue.")
            return False
        dispatcher.utter_message(text=availability_text(availability))
        return True


def availability_text(a: Availability) -> Text:
    asked = " ".join(part for part in (a.color, f"size {a.size}" if a.size else "") if part)
    if not asked:
        in_stock = [v.label for v in a.variants if v.stock > 0]
        if not in_stock:
            return f"Sorry, the {a.title} is sold out right now."
        return f"The {a.title} is in stock in: {', '.join(in_stock)}."
    if not a.color_offered:
        return f"The {a.title} doesn't come in {a.color}. It comes in {', '.join(a.colors)}."
    if not a.size_offered:
        return f"The {a.title} doesn't come in size {a.size}. Sizes: {', '.join(a.sizes)}."
    if a.in_stock:
        few = f" (only {a.stock} left)" if a.stock <= 3 else ""
        return f"Yes! The {a.title} in {asked} is in stock{few}. Product page: {absolute_url(a.url_path)}"
    alternatives = []
    if a.other_sizes:
        alternatives.append(f"other sizes in stock: {', '.join(a.other_sizes)}")
    if a.other_colors:
        alternatives.append(f"other colours in stock: {', '.join(a.other_colors)}")
    hint = f" ({'; '.join(alternatives)})" if alternatives else ""
    return f"Sorry, the {a.title} in {asked} is sold out right now{hint}."


class ActionShowReviews(ProductAction):
    def name(self) -> Text:
        return "action_show_reviews"

    def answer(self, session, dispatcher, tracker, handle) -> bool:
        summary = review_summary(session, handle)
        if summary is None:
            dispatcher.utter_message(text="Sorry, that product is no longer in our catalogue.")
            return False
        if not summary.count:
            dispatcher.utter_message(text=f"The {summary.title} has no reviews yet.")
            return True
        stars = ", ".join(f"{stars}★ {summary.distribution[stars]}" for stars in (5, 4, 3, 2, 1))
        lines = [f"The {summary.title} is rated {summary.average:.1f}/5 from {summary.count} reviews ({stars})."]
        if summary.positive:
            lines.append(f'Liked: "{summary.positive.text}" ({summary.positive.author}, {summary.positive.rating}★)')
        if summary.critical:
            lines.append(f'Critical: "{summary.critical.text}" ({summary.critical.author}, {summary.critical.rating}★)')
        dispatcher.utter_message(text="\n".join(lines))
        return True
