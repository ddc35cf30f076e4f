"""Proactive help for the page the shopper is on, from the page context the chat widget sends.

The shop front's pages open the widget with `/page_context{"page_type": ..., "product_handle": ...}`
(web/server.py `_chat_config`; web/static/shop.js sends it again when the shopper opens the chat on
another page). A product page gets that product's sizes in stock per colour, the delivery estimate and
an offer to answer questions, and becomes "that product" for follow-ups ("does it come in blue?"); a
cart or checkout page gets an offer to help finish the order; any other page, or a product that is not
(or no longer) in the catalogue, gets the usual greeting.
"""
import json
import logging
from typing import Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.cart import CHECKOUT_BUTTON
from actions.greet import greeting_text
from actions.products import delivery_text, stock_text
from shop.carts import CartView, cart_view
from shop.db import session_scope
from shop.policy import format_money
from shop.products import ProductFacts, product_facts

logger = logging.getLogger(__name__)

HANDLE_MAX = 200  # as long as a catalog handle may be (shop.models.Product.handle)
PRODUCT_PAGES = {"product"}
ORDER_PAGES = {"cart", "checkout"}
HANDOFF_BUTTON = {"title": "Talk to a person", "payload": "/talk_to_human"}


def _entity(tracker: Tracker, name: Text) -> Optional[Text]:
    value = next(tracker.get_latest_entity_values(name), None)
    text = "" if value is None else str(value).strip()[:HANDLE_MAX]
    return text or None


def product_greeting(facts: ProductFacts) -> Text:
    lines = [f"Looking at the {facts.title}? Here's what you may want to know.", stock_text(facts)]
    if facts.in_stock:
        lines.append(f"Order today and it arrives {delivery_text(facts.delivery)} with standard shipping, "
                     f"or {delivery_text(facts.express_delivery)} with express.")
    lines.append("Any questions about it? Ask me about sizes, colours, materials or what other shoppers say.")
    return "\n".join(lines)


def product_buttons(facts: ProductFacts) -> List[Dict[Text, Text]]:
    buttons = []
    if facts.in_stock:
        buttons.append({"title": "Add to cart",
                        "payload": "/add_to_cart" + json.dumps({"product_handle": facts.handle})})
    if facts.review_count:
        buttons.append({"title": "Read the reviews", "payload": "/ask_reviews"})
    buttons.append({"title": "Delivery options", "payload": "/shipping_options"})
    return buttons


def order_help(view: CartView) -> Text:
    if view.is_empty:
        return ("Need a hand finishing your order? I can answer questions about delivery, payment, returns "
                "or discount codes.")
    items = f"{view.item_count} item{'s' if view.item_count != 1 else ''}"
    return (f"You have {items} in your cart, {format_money(view.total_cents)} in total. Shall I help you check out? "
            "I can also answer questions about delivery, payment, returns or discount codes.")


def order_buttons(view: CartView) -> List[Dict[Text, Text]]:
    if view.is_empty:
        return [{"title": "Delivery options", "payload": "/shipping_options"},
                {"title": "Payment methods", "payload": "/payment_methods"}, HANDOFF_BUTTON]
    return [CHECKOUT_BUTTON, {"title": "Show my cart", "payload": "/view_cart"}, HANDOFF_BUTTON]


class ActionPageGreeting(Action):
    def name(self) -> Text:
        return "action_page_greeting"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        page_type = (_entity(tracker, "page_type") or "").lower()
        handle = _entity(tracker, "product_handle")
        try:
            if page_type in PRODUCT_PAGES and handle:
                facts = self._facts(handle)
                if facts is not None:
                    dispatcher.utter_message(text=product_greeting(facts), buttons=product_buttons(facts))
                    return [SlotSet("current_product", facts.handle)]
            elif page_type in ORDER_PAGES:
                with session_scope() as session:
                    view = cart_view(session, tracker.sender_id)
                dispatcher.utter_message(text=order_help(view), buttons=order_buttons(view))
                return []
        except SQLAlchemyError:
            # The greeting needs no data: a shop database that is down must not leave the chat silent.
            logger.exception("Reading the page's product or cart failed")
        dispatcher.utter_message(text=greeting_text())
        return []

    @staticmethod
    def _facts(handle: Text) -> Optional[ProductFacts]:
        with session_scope() as session:
            return product_facts(session, handle)
