"""Checkout in the chat: a form that asks only what is missing, the summary, and the order placed on "yes".

Flow: action_start_checkout (pre-fills what the shop already knows, e.g. a verified returning customer's
address) -> cart_checkout_form (name, email, shipping address, shipping method; skips filled slots) ->
action_checkout_summary (items, discount, shipping, tax, total; asks to confirm) -> on "yes"
action_place_order: the order is placed pending_payment and the shopper gets the hosted payment page's link.
The card is typed on that page only, never in the chat.
"""
import logging
import re
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.presentation import channel_supports_cards
from actions.shop_errors import say_shop_data_unavailable
from shop.carts import CartError, attach_customer, find_open_cart, normalise_email
from shop.checkout import CheckoutRefusal, checkout_requirements, checkout_summary, place_order
from shop.db import session_scope
from shop.payments import PaymentError, SandboxPaymentProvider
from shop.policy import format_money, load_policy
from shop.promotions import first_order_code, loyalty_code, paid_orders_count, remove_code

logger = logging.getLogger(__name__)

DETAIL_SLOTS = {
    "name": "cart_checkout_name",
    "email": "cart_checkout_email",
    "shipping_address": "cart_checkout_address",
    "shipping_method": "cart_checkout_shipping_method",
}
ADDRESS_EXAMPLE = "742 Maple Street, Portland, 97205, US"
CONFIRM_BUTTONS = [{"title": "Yes, place the order", "payload": "/affirm"}, {"title": "Not now", "payload": "/deny"}]
# Postcodes as written in the countries we ship to: US ZIP, Dutch, British, Canadian, German.
_POSTCODE = re.compile(r"\b(\d{5}(?:-\d{4})?|\d{4}\s?[A-Za-z]{2}|[A-Za-z]{1,2}\d[A-Za-z\d]?\s?\d[A-Za-z]{2}"
                       r"|[A-Za-z]\d[A-Za-z]\s?\d[A-Za-z]\d)\b")
_STATE_CODE = re.compile(r"(?:^|\s+)[A-Z]{2}$")


def parse_address(text: Optional[Text]) -> Optional[Dict[Text, Text]]:
    """'742 Maple Street, Portland, OR 97205, USA' -> address_line, city, postcode, country; None if incomplete."""
    parts = [p.strip() for p in re.split(r"[,\n;]+", text or "") if p.strip()]
    if len(parts) < 2:
        return None
    country = load_policy().shipping.resolve_country(parts[-1])
    if country:
        parts.pop()
    for index in range(len(parts) - 1, 0, -1):
        match = _POSTCODE.search(parts[index])
        if match:
            break
    else:
        return None
    postcode = match.group(1).upper()
    city = _STATE_CODE.sub("", (parts[index][:match.start()] + parts[index][match.end():]).strip(" ,")).strip()
    before = parts[:index]
    if not city and len(before) >= 2:
        city = before.pop()
    if not city or not before:
        return None
    return {"address_line": ", ".join(before), "city": city, "postcode": postcode, "country": country or "US"}


def address_text(details) -> Text:
    return ", ".join(p for p in (details.address_line, details.city, details.postcode, details.country) if p)


def details_from_slots(tracker: Tracker, **overrides: Any) -> Dict[Text, Any]:
    """CheckoutDetails fields from the form's slots (and the values being validated)."""
    slots = {name: tracker.get_slot(slot) for name, slot in DETAIL_SLOTS.items()}
    slots.update(overrides)
    details: Dict[Text, Any] = {"name": slots["name"] or "", "email": slots["email"] or "",
                                "shipping_method": slots["shipping_method"] or ""}
    details.update(parse_address(slots["shipping_address"]) or {})
    total = tracker.get_slot("cart_checkout_total")
    if total is not None:
        details["confirmed_total_cents"] = int(total)
    return details


def _problem(session: Session, tracker: Tracker, requirement: Text, **value: Any) -> Optional[Text]:
    """What the shop finds wrong with this one detail, or None."""
    found = checkout_requirements(session, tracker.sender_id, details=details_from_slots(tracker, **value),
                                  verified=False)
    return found.problems.get(requirement)


# ------------------------------------------------------------------------------------ starting


class ActionStartCheckout(Action):
    def name(self) -> Text:
        return "action_start_checkout"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                cart = find_open_cart(session, tracker.sender_id)
                if cart is None or not cart.items:
                    dispatcher.utter_message(text="Your cart is empty, so there's nothing to check out yet. Tell me "
                                                  "what you're looking for and I'll find it.")
                    return [SlotSet("cart_checkout_status", "blocked")]
                found = checkout_requirements(session, tracker.sender_id, details=details_from_slots(tracker))
        except SQLAlchemyError:
            logger.exception("Starting checkout failed")
            say_shop_data_unavailable(dispatcher)
            return [SlotSet("cart_checkout_status", "blocked")]
        events = [SlotSet("cart_checkout_status", "collecting"), SlotSet("cart_checkout_total", None)]
        known = found.details
        values = {"name": known.name, "email": known.email, "shipping_method": known.shipping_method,
                  "shipping_address": address_text(known) if "shipping_address" not in found.missing else None}
        for requirement, slot in DETAIL_SLOTS.items():
            if requirement in found.problems and tracker.get_slot(slot) is not None:
                events.append(SlotSet(slot, None))  # asked again by the form, with the reason
            elif requirement not in found.missing and requirement not in found.problems and values[requirement]:
                if tracker.get_slot(slot) != values[requirement]:
                    events.append(SlotSet(slot, values[requirement]))
        if "shipping_address" in found.prefilled:
            dispatcher.utter_message(text=f"Welcome back! I'll ship to {known.name}, {address_text(known)} as last "
                                          "time.")
        else:
            dispatcher.utter_message(text="Let's check out. It only takes a few questions; you'll see the total "
                                          "before anything is ordered.")
        return events


# ------------------------------------------------------------------------------------ the form


class ValidateCartCheckoutForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_cart_checkout_form"

    async def validate_cart_checkout_name(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        name = " ".join(str(value or "").split())
        if re.search(r"[\d@]", name):
            dispatcher.utter_message(text="Please give the name for the shipping label, like Sam Rivera.")
            return {"cart_checkout_name": None}
        with session_scope() as session:
            problem = _problem(session, tracker, "name", name=name)
        if problem:
            dispatcher.utter_message(text=problem)
            return {"cart_checkout_name": None}
        return {"cart_checkout_name": name}

    async def validate_cart_checkout_email(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        try:
            email = normalise_email(value)
            with session_scope() as session:
                attach_customer(session, tracker.sender_id, email)  # the cart now follows this customer
        except CartError as error:
            dispatcher.utter_message(text=error.message)
            return {"cart_checkout_email": None}
        return {"cart_checkout_email": email}

    async def validate_cart_checkout_address(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        parsed = parse_address(str(value or ""))
        if parsed is None:
            dispatcher.utter_message(text=f"I need the street, city, postcode and country, separated by commas, "
                                          f"like: {ADDRESS_EXAMPLE}.")
            return {"cart_checkout_address": None}
        text = ", ".join(parsed[k] for k in ("address_line", "city", "postcode", "country"))
        with session_scope() as session:
            problem = _problem(session, tracker, "shipping_address", shipping_address=text)
        if problem:
            dispatcher.utter_message(text=problem)
            return {"cart_checkout_address": None}
        return {"cart_checkout_address": text}

    async def validate_cart_checkout_shipping_method(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        shipping = load_policy().shipping
        words = str(value or "").lower()
        method = shipping.resolve_method(words) or next(
            (m for m in shipping.methods.values() if re.search(rf"\b({m.key}|{m.label.lower()})\b", words)), None)
        if method is None:
            labels = " or ".join(m.label.lower() for m in shipping.methods.values())
            dispatcher.utter_message(text=f"We ship {labels}; which would you like?")
            return {"cart_checkout_shipping_method": None}
        return {"cart_checkout_shipping_method": method.key}


class ActionAskCheckoutDetail(Action, ABC):
    @abstractmethod
    def question(self, tracker: Tracker) -> Dict[Text, Any]:
        """The message asking for this detail."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        dispatcher.utter_message(**self.question(tracker))
        return []


class ActionAskCartCheckoutName(ActionAskCheckoutDetail):
    def name(self) -> Text:
        return "action_ask_cart_checkout_name"

    def question(self, tracker):
        return {"text": "What name should go on the shipping label?"}


class ActionAskCartCheckoutEmail(ActionAskCheckoutDetail):
    def name(self) -> Text:
        return "action_ask_cart_checkout_email"

    def question(self, tracker):
        return {"text": "Which email address should I send the order confirmation to?"}


class ActionAskCartCheckoutAddress(ActionAskCheckoutDetail):
    def name(self) -> Text:
        return "action_ask_cart_checkout_address"

    def question(self, tracker):
        return {"text": f"What's the shipping address? Street, city, postcode and country, like: {ADDRESS_EXAMPLE}"}


class ActionAskCartCheckoutShippingMethod(ActionAskCheckoutDetail):
    def name(self) -> Text:
        return "action_ask_cart_checkout_shipping_method"

    def question(self, tracker):
        try:
            with session_scope() as session:
                options = checkout_summary(session, tracker.sender_id).shipping_options
        except SQLAlchemyError:
            logger.exception("Reading shipping options failed")
            options = ()
        if not options:
            return {"text": "Standard or express shipping?"}
        priced = [f"{o.label} ({'free' if o.cents == 0 else format_money(o.cents)})" for o in options]
        return {"text": f"Which shipping would you like: {' or '.join(priced)}?",
                "buttons": [{"title": p, "payload": o.label.lower()} for p, o in zip(priced, options)]}


# ------------------------------------------------------------------------------------ summary and order


def personal_offer(session: Session, email: Text) -> Optional[Text]:
    """A first-order code for a new customer, a thank-you code for a returning one: mentioned when issued."""
    now = datetime.utcnow()
    offer = loyalty_code(session, email, now) if paid_orders_count(session, email) else first_order_code(
        session, email, now)
    if not offer.ok or not offer.newly_issued:
        return None
    return f"{offer.message} Say \"apply {offer.code}\" to use it on this order."


class ActionCheckoutSummary(Action):
    def name(self) -> Text:
        return "action_checkout_summary"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        details = details_from_slots(tracker)
        try:
            with session_scope() as session:
                summary = checkout_summary(session, tracker.sender_id, details["shipping_method"] or "standard",
                                           email=details["email"] or None)
                offer = personal_offer(session, details["email"]) if details["email"] else None
        except SQLAlchemyError:
            logger.exception("Checkout summary failed")
            say_shop_data_unavailable(dispatcher)
            return [SlotSet("cart_checkout_status", "blocked")]
        ship_to = f"Ship to: {details['name']}, {tracker.get_slot('cart_checkout_address')}"
        text = f"{summary.cart.text()}\n{ship_to}\nConfirmation to: {details['email']}"
        if not summary.ready:
            problems = " ".join(summary.problems)
            dispatcher.utter_message(text=f"{text}\n{problems} Please change your cart, then say \"checkout\" again.")
            return [SlotSet("cart_checkout_status", "blocked")]
        dispatcher.utter_message(text=text)
        if offer:
            dispatcher.utter_message(text=offer)
        dispatcher.utter_message(text=f"Shall I place the order for {format_money(summary.total_cents)}? You'll pay "
                                      "on our secure payment page.", buttons=CONFIRM_BUTTONS)
        return [SlotSet("cart_checkout_status", "awaiting_confirmation"),
                SlotSet("cart_checkout_total", float(summary.total_cents))]


class ActionPlaceOrder(Action):
    def name(self) -> Text:
        return "action_place_order"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        if tracker.get_slot("cart_checkout_status") != "awaiting_confirmation":
            dispatcher.utter_message(text="Before I place an order I need your details and your OK on the total. "
                                          "Say \"checkout\" to start.", buttons=[{"title": "Check out",
                                                                                "payload": "/checkout"}])
            return []
        try:
            with session_scope() as session:
                try:
                    order = place_order(session, tracker.sender_id, details_from_slots(tracker), datetime.utcnow())
                except CheckoutRefusal as refusal:
                    return self._refused(session, dispatcher, tracker, refusal)
                payment = SandboxPaymentProvider().create_session(order)
                number, total, url = order.number, order.total_cents, payment.url
        except PaymentError as error:
            dispatcher.utter_message(text=error.message)
            return [SlotSet("cart_checkout_status", "blocked")]
        except SQLAlchemyError:
            logger.exception("Placing the order failed")
            say_shop_data_unavailable(dispatcher)
            return []
        text = (f"Order {number} is placed and waiting for payment: {format_money(total)}. Please pay on our secure "
                "payment page (never type card details into this chat); I'll confirm here as soon as the payment "
                "goes through. Your cart stays as it is until then.")
        # One message: the web chat only shows the buttons of the latest message.
        if channel_supports_cards(tracker):
            dispatcher.utter_message(text=text, buttons=[{"title": "Pay now", "type": "web_url", "url": url}])
        else:
            dispatcher.utter_message(text=f"{text}\nPayment page: {url}")
        return [SlotSet("cart_checkout_status", "placed"), SlotSet("cart_order_number", number),
                SlotSet("cart_checkout_total", None)]

    @staticmethod
    def _refused(session: Session, dispatcher: CollectingDispatcher, tracker: Tracker,
                 refusal: CheckoutRefusal) -> List[Dict]:
        new_total = refusal.details.get("new_total_cents")
        if refusal.code == "discount_invalid":
            # The code can't be used any more: take it off so the total asked for is the one charged.
            remove_code(session, tracker.sender_id)
            dispatcher.utter_message(text=f"{refusal.message.split(' Without the code')[0]} I've taken the code off: "
                                          f"your total is now {format_money(new_total)}. Shall I place the order?",
                                     buttons=CONFIRM_BUTTONS)
            return [SlotSet("cart_checkout_total", float(new_total))]
        if refusal.code in ("price_changed", "total_changed"):
            dispatcher.utter_message(text=refusal.message, buttons=CONFIRM_BUTTONS)
            return [SlotSet("cart_checkout_total", float(new_total))]
        dispatcher.utter_message(text=refusal.message)
        return [SlotSet("cart_checkout_status", "blocked"), SlotSet("cart_checkout_total", None)]


class ActionCancelCheckout(Action):
    def name(self) -> Text:
        return "action_cancel_checkout"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        dispatcher.utter_message(text="No problem, I haven't placed the order. Your cart is saved; say \"checkout\" "
                                      "whenever you're ready.")
        return [SlotSet("cart_checkout_status", None), SlotSet("cart_checkout_total", None)]
