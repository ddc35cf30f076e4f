"""Cart reminders and stock/price alerts in the chat (the shop side is shop/reminders.py and shop/alerts.py).

The background worker (`python -m shop worker`) triggers, through Rasa's trigger_intent API:

* EXTERNAL_cart_reminder (entity discount_code when the reminder carries one) -> action_cart_reminder lists
  the cart with today's prices and the code, with "Check out" and "No thanks" buttons;
* EXTERNAL_stock_alert (entity stock_alert_id) -> action_stock_alert says what changed, with the page link.

The shopper asks for alerts with notify_me ("tell me when the blue one in size M is back", "let me know if
it gets cheaper") -> action_subscribe_alert, and stops cart reminders with stop_reminders ("no thanks",
"stop reminding me") -> action_stop_reminders.
"""
import json
import logging
import re
from datetime import datetime
from typing import Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from actions.cart import CHECKOUT_BUTTON, choice_from_text, latest_entity
from actions.references import resolve_reference
from actions.shop_errors import say_shop_data_unavailable
from shop.alerts import alert_notice, choose_variant, subscribe
from shop.carts import cart_view
from shop.catalog import get_product, summaries_for_handles
from shop.db import session_scope
from shop.models import DiscountCode
from shop.policy import format_money
from shop.promotions import format_day
from shop.reminders import stop_reminders

logger = logging.getLogger(__name__)

NO_THANKS_BUTTON = {"title": "No thanks", "payload": "/stop_reminders"}
# Words that make "let me know ..." about the price rather than the stock.
PRICE_WORDS = re.compile(r"\b(cheaper|price|prices|priced|drops?|dropped|sale|discount(ed)?|less|cost|costs|"
                         r"reduced|markdown|deal|goes down)\b", re.IGNORECASE)


class ActionCartReminder(Action):
    """The reminder itself: what is still in the cart, the total, and the reminder's single-use code."""

    def name(self) -> Text:
        return "action_cart_reminder"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        code_name = latest_entity(tracker, "discount_code")
        try:
            with session_scope() as session:
                view = cart_view(session, tracker.sender_id)
                code = session.execute(select(DiscountCode).where(func.upper(DiscountCode.code) ==
                                                                  code_name.upper())).scalar_one_or_none() \
                    if code_name else None
                offer = None if code is None else (code.code, code.value, code.ends_at)
        except SQLAlchemyError:
            logger.exception("Reading the cart for a reminder failed")
            return []  # the shopper did not ask for anything: better silent than an error message
        if view.is_empty:  # emptied between the worker's check and now
            return []
        lines = ["You left these in your cart:"] + [f"- {line.text}" for line in view.lines]
        lines.append(f"Total: {format_money(view.total_cents)}.")
        if offer is not None:
            number, percent, ends_at = offer
            until = f", valid until {format_day(ends_at, datetime.utcnow())}" if ends_at else ""
            lines.append(f"Here's {percent}% off if you order now: say \"apply {number}\" (one use{until}).")
        lines.append("Shall we check out?")
        dispatcher.utter_message(text="\n".join(lines), buttons=[CHECKOUT_BUTTON, NO_THANKS_BUTTON])
        return []


class ActionStopReminders(Action):
    """ "No thanks" / "stop reminding me": no more cart reminders in this chat (alerts the shopper asked for
    are kept)."""

    def name(self) -> Text:
        return "action_stop_reminders"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                stop_reminders(session, tracker.sender_id, datetime.utcnow())
        except SQLAlchemyError:
            logger.exception("Stopping cart reminders failed")
            say_shop_data_unavailable(dispatcher)
            return []
        dispatcher.utter_message(text="No problem: I won't remind you about your cart again. It stays saved "
                                      "if you change your mind.")
        return []


def alert_kind_from_text(text: Text) -> Text:
    return "price_drop" if PRICE_WORDS.search(text or "") else "back_in_stock"


class ActionSubscribeAlert(Action):
    """ "Tell me when the blue one in size M is back" / "let me know if it gets cheaper": an alert on the
    product meant (resolved like the cart does: "the second one", "that jacket", "it")."""

    def name(self) -> Text:
        return "action_subscribe_alert"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                return self._subscribe(session, dispatcher, tracker)
        except SQLAlchemyError:
            logger.exception("Recording a stock alert failed")
            say_shop_data_unavailable(dispatcher)
            return []

    def _subscribe(self, session, dispatcher: CollectingDispatcher, tracker: Tracker) -> List[Dict]:
        handle = latest_entity(tracker, "product_handle")
        if handle is None:
            shown = summaries_for_handles(session, tracker.get_slot("shown_products") or [])
            handle = resolve_reference(tracker, shown, by_description=True)
        product = get_product(session, handle) if handle else None
        if product is None:
            dispatcher.utter_message(text="Which product should I keep an eye on? Show me one first, then say for "
                                          "example \"tell me when the second one is back\".")
            return []
        text = tracker.latest_message.get("text") or ""
        kind = alert_kind_from_text(text)
        named = choice_from_text(product, text)
        size = latest_entity(tracker, "size") or named.get("size")
        color = latest_entity(tracker, "color") or named.get("color")
        choice = choose_variant(product, kind, size=size, color=color)
        events: List[Dict] = [SlotSet("current_product", product.handle)]
        if choice.reason == "no_such_variant":
            wanted = " ".join(p for p in (color, f"size {size}" if size else "") if p)
            dispatcher.utter_message(text=f"{product.title} doesn't come in {wanted or 'that version'}.")
            return events
        if choice.reason == "in_stock":
            dispatcher.utter_message(text=f"Good news: {product.title} is in stock right now "
                                          f"({', '.join(choice.options)}). Say \"add it\" to put it in your cart.")
            return events
        if choice.reason == "ambiguous":
            dispatcher.utter_message(text=f"Which one should I watch? Sold out right now: "
                                          f"{', '.join(choice.options)}. Say for example \"tell me when the "
                                          f"{choice.options[0].replace(' / ', ' ')} is back\".")
            return events
        email = latest_entity(tracker, "email")
        result = subscribe(session, variant_id=choice.variant.id, kind=kind, now=datetime.utcnow(),
                           conversation_id=tracker.sender_id, email=email, email_consent=email is not None)
        if result.reason == "invalid_email":
            dispatcher.utter_message(text="That email address doesn't look right; please check it (like "
                                          "name@example.com).")
            return events
        variant = choice.variant
        item = f"{product.title} ({variant.label})" if variant.label != "Default" else product.title
        if kind == "price_drop":
            news = f"when {item} costs less than {format_money(result.alert.price_cents_at_subscription)}"
        else:
            news = f"as soon as {item} is back in stock"
        by_email = f", or by email at {result.alert.email} if you're not around" if result.alert.email else ""
        again = "I'm already watching it: " if not result.created else "Done: "
        dispatcher.utter_message(text=f"{again}I'll tell you here {news}{by_email}.")
        return events


class ActionStockAlert(Action):
    """The alert itself, triggered by the worker: what changed, today's price, the page link."""

    def name(self) -> Text:
        return "action_stock_alert"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        alert_id = latest_entity(tracker, "stock_alert_id")
        try:
            with session_scope() as session:
                notice = alert_notice(session, alert_id)
        except SQLAlchemyError:
            logger.exception("Reading stock alert %s failed", alert_id)
            return []
        if notice is None:
            return []
        wanted = {"product_handle": notice.product_handle, "size": notice.size, "color": notice.color}
        add = {"title": "Add to cart",
               "payload": "/add_to_cart" + json.dumps({name: value for name, value in wanted.items() if value})}
        dispatcher.utter_message(text=f"{notice.text}\n{notice.url}", buttons=[add])
        return [SlotSet("current_product", notice.product_handle)]
