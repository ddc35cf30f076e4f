"""Guided recommendations: the gift quiz, its picks, and the shopper's stated preferences."""
import logging
import re
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.presentation import channel_supports_cards, price_text, product_carousel
from actions.search import NO_PREFERENCE, price_to_cents
from actions.shop_errors import say_shop_data_unavailable
from shop.db import session_scope
from shop.products import normalise_size
from shop.recommendations import (
    Pick,
    PreferenceError,
    asks_for_oneself,
    find_customer,
    gift_picks,
    personalised_picks,
    resolve_recipient,
    update_preferences,
)
from shop.verification import verified_email

logger = logging.getLogger(__name__)

QUIZ_SLOTS = ("recipient", "occasion", "style", "gift_budget")
DISLIKE_WORDS = re.compile(r"\b(don'?t|do not|hate|dislike|avoid|not a fan|no more)\b", re.IGNORECASE)


def known_customer_email(tracker: Tracker) -> Optional[Text]:
    """The email of a customer this conversation proved it is (by an order check or a one-time code)."""
    try:
        with session_scope() as session:
            email = verified_email(session, tracker.sender_id)
            return email if email and find_customer(session, email) is not None else None
    except SQLAlchemyError:
        logger.exception("Reading the verification failed")
        return None


def wants_picks_for_themselves(tracker: Tracker) -> bool:
    recipient = resolve_recipient(tracker.get_slot("recipient"))
    return recipient is not None and recipient.key == "myself"


def _answer(tracker: Tracker, slot: Text) -> Optional[Text]:
    value = tracker.get_slot(slot)
    if value is None or str(value).lower() == NO_PREFERENCE:
        return None
    return str(value)[:60]


class ValidateGiftQuizForm(FormValidationAction):
    """"Doesn't matter" is a valid answer to every quiz question; a budget must be an amount."""

    def name(self) -> Text:
        return "validate_gift_quiz_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> List[Text]:
        # A verified customer asking for themselves gets picks from their orders and preferences: no quiz.
        if wants_picks_for_themselves(tracker) and known_customer_email(tracker):
            return ["recipient"]
        return await super().required_slots(domain_slots, dispatcher, tracker, domain)

    def _no_preference(self, slot: Text, tracker: Tracker) -> Dict[Text, Any]:
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if tracker.get_slot("requested_slot") == slot and intent == "no_preference":
            return {slot: NO_PREFERENCE}
        return {}

    async def extract_occasion(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("occasion", tracker)

    async def extract_style(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("style", tracker)

    async def extract_recipient(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        asked = tracker.get_slot("requested_slot") in (None, "recipient")
        if asked and not tracker.get_slot("recipient") and asks_for_oneself(tracker.latest_message.get("text")):
            return {"recipient": "myself"}
        return self._no_preference("recipient", tracker)

    async def extract_gift_budget(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._no_preference("gift_budget", tracker)

    async def validate_gift_budget(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        if value == NO_PREFERENCE:
            return {"gift_budget": value}
        cents = price_to_cents(value)
        if cents is None or cents <= 0:
            dispatcher.utter_message(text='Sorry, I need an amount for the budget, like "under $50".')
            return {"gift_budget": None}
        return {"gift_budget": value}


def _choice(title: Text, payload: Text) -> Dict[Text, Text]:
    return {"title": title, "payload": payload}


# The quiz's questions, with answers a tap away; "/no_preference" means "doesn't matter".
QUIZ_QUESTIONS = {
    "recipient": ("Happy to help you find a gift! Who is it for?", [
        _choice("Partner", "it's for my girlfriend"), _choice("Mom", "for my mom"), _choice("Dad", "for my dad"),
        _choice("A friend", "for a friend"), _choice("Myself", "for myself")]),
    "occasion": ("What's the occasion?", [
        _choice("Birthday", "birthday"), _choice("Anniversary", "anniversary"), _choice("Christmas", "christmas"),
        _choice("Just because", "/no_preference")]),
    "style": ("Which style suits them best?", [
        _choice("Casual", "casual"), _choice("Sporty", "sporty"), _choice("Elegant", "elegant"),
        _choice("Outdoorsy", "outdoorsy"), _choice("Not sure", "/no_preference")]),
    "gift_budget": ("And roughly how much would you like to spend?", [
        _choice("Under $30", "under $30"), _choice("Under $60", "under $60"), _choice("Under $100", "under $100"),
        _choice("No limit", "/no_preference")]),
}


class ActionAskQuizQuestion(Action, ABC):
    @abstractmethod
    def name(self) -> Text:
        """action_ask_<slot>, the name Rasa's form looks for."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        text, buttons = QUIZ_QUESTIONS[self.name()[len("action_ask_"):]]
        dispatcher.utter_message(text=text, buttons=buttons)
        return []


class ActionAskRecipient(ActionAskQuizQuestion):
    def name(self) -> Text:
        return "action_ask_recipient"


class ActionAskOccasion(ActionAskQuizQuestion):
    def name(self) -> Text:
        return "action_ask_occasion"


class ActionAskStyle(ActionAskQuizQuestion):
    def name(self) -> Text:
        return "action_ask_style"


class ActionAskGiftBudget(ActionAskQuizQuestion):
    def name(self) -> Text:
        return "action_ask_gift_budget"


def pick_line(position: int, pick: Pick) -> Text:
    return f"{position}. {pick.product.title} ({price_text(pick.product)}): {pick.reason}"


class ActionRecommendProducts(Action):
    def name(self) -> Text:
        return "action_recommend_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        budget = price_to_cents(_answer(tracker, "gift_budget"))
        disliked = set((tracker.get_slot("preferences") or {}).get("disliked_colors", []))
        forget_answers = [SlotSet(slot, None) for slot in QUIZ_SLOTS]
        customer_email = known_customer_email(tracker) if wants_picks_for_themselves(tracker) else None
        intro = None
        try:
            with session_scope() as session:
                picks = personalised_picks(session, customer_email) if customer_email else []
                if picks:
                    intro = f"Here are {len(picks)} picks for you, from your orders and the preferences you gave:"
                else:
                    picks = gift_picks(
                        session,
                        occasion=_answer(tracker, "occasion"),
                        recipient=_answer(tracker, "recipient"),
                        style=_answer(tracker, "style"),
                        budget_cents=budget,
                    )
        except SQLAlchemyError:
            logger.exception("Recommendation failed")
            say_shop_data_unavailable(dispatcher)
            return forget_answers
        picks = [p for p in picks if not disliked or set(c.lower() for c in p.product.colors) - disliked]
        if not picks:
            dispatcher.utter_message(
                text="I couldn't find a gift that fits all of that. Try a bigger budget or say \"doesn't matter\" to a question."
            )
            return forget_answers
        intro = intro or f"Here are my {len(picks)} picks:"
        if channel_supports_cards(tracker):
            dispatcher.utter_message(text=intro)
            dispatcher.utter_message(attachment=product_carousel([p.product for p in picks]))
            dispatcher.utter_message(text="Why these:\n" + "\n".join(pick_line(i, p) for i, p in enumerate(picks, 1)))
        else:
            dispatcher.utter_message(text=intro + "\n" + "\n".join(pick_line(i, p) for i, p in enumerate(picks, 1)))
        return forget_answers + [SlotSet("shown_products", [p.handle for p in picks]), SlotSet("current_product", None)]


class ActionSetPreference(Action):
    """Keeps "I'm a size M" and "I don't like yellow" for this conversation's picks and questions."""

    def name(self) -> Text:
        return "action_set_preference"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        preferences = dict(tracker.get_slot("preferences") or {})
        noted = []
        text = tracker.latest_message.get("text") or ""
        for entity in tracker.latest_message.get("entities", []):
            value = str(entity.get("value") or "").strip().lower()[:30]
            if not value:
                continue
            if entity.get("entity") == "size":
                size = normalise_size(value)
                key = "shoe_size" if size.isdigit() else "size"
                preferences[key] = size
                noted.append(f"you wear size {size}")
            elif entity.get("entity") == "color":
                role = entity.get("role") or ("disliked" if DISLIKE_WORDS.search(text) else "liked")
                liked = role == "liked"
                add, remove = ("liked_colors", "disliked_colors") if liked else ("disliked_colors", "liked_colors")
                preferences[add] = sorted(set(preferences.get(add, [])) | {value})
                preferences[remove] = [c for c in preferences.get(remove, []) if c != value]
                noted.append(f"you {'like' if liked else 'would rather avoid'} {value}")
        if not noted:
            dispatcher.utter_message(text='Tell me your size or a colour you like or avoid, e.g. "I\'m a size M" or "I don\'t like yellow".')
            return []
        saved = _save_to_account(tracker, preferences)
        where = " and saved it to your account for next time" if saved else ""
        dispatcher.utter_message(text=f"Got it: {' and '.join(noted)}. I'll keep that in mind for my suggestions{where}.")
        return [SlotSet("preferences", preferences)]


def _save_to_account(tracker: Tracker, preferences: Dict[Text, Any]) -> bool:
    """Stores the chat's preferences on the verified customer's account, so their next chat's picks use them."""
    email = known_customer_email(tracker)
    if email is None:
        return False
    liked, disliked = preferences.get("liked_colors") or [], preferences.get("disliked_colors") or []
    try:
        with session_scope() as session:
            update_preferences(session, email, size=preferences.get("size"), shoe_size=preferences.get("shoe_size"))
            for color in liked:
                update_preferences(session, email, like_color=color)
            for color in disliked:
                update_preferences(session, email, dislike_color=color)
    except PreferenceError:
        return False  # e.g. "size 7" is neither a clothing nor an EU shoe size: kept for this chat only
    except SQLAlchemyError:
        logger.exception("Saving preferences failed")
        return False
    return True
