"""The newsletter in the chat: subscribe only after an explicit yes to the consent wording; unsubscribe at once.

newsletter_form asks for the email (skipped when the chat already knows it) and for consent (yes/no);
action_newsletter_subscribe records the consent with time, source "chat" and the exact wording shown.
"""
import logging
from datetime import datetime
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.shop_errors import say_shop_data_unavailable
from shop.carts import CartError, normalise_email
from shop.db import session_scope
from shop.newsletter import DEFAULT_CONSENT_TEXT, NewsletterError, subscribe, unsubscribe
from shop.settings import shop_settings

logger = logging.getLogger(__name__)

SOURCE = "chat"


def consent_wording() -> Text:
    return DEFAULT_CONSENT_TEXT.replace("{shop}", shop_settings().name)


class ValidateNewsletterForm(FormValidationAction):
    """Both newsletter forms: the email from this chat's checkout when the shopper gave none.

    rasa_sdk reads the form's name from name() (its form_name() method); shadowing that method with an
    attribute made every live run fail with "'str' object is not callable"."""

    def name(self) -> Text:
        return "validate_newsletter_form"

    async def extract_newsletter_email(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        if tracker.get_slot("newsletter_email") is None and tracker.get_slot("cart_checkout_email"):
            return {"newsletter_email": tracker.get_slot("cart_checkout_email")}
        return {}

    async def validate_newsletter_email(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        try:
            return {"newsletter_email": normalise_email(value)}
        except CartError as error:
            dispatcher.utter_message(text=error.message)
            return {"newsletter_email": None}


class ValidateNewsletterUnsubscribeForm(ValidateNewsletterForm):
    def name(self) -> Text:
        return "validate_newsletter_unsubscribe_form"


class ActionAskNewsletterEmail(Action):
    def name(self) -> Text:
        return "action_ask_newsletter_email"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        dispatcher.utter_message(text="Which email address is it for?")
        return []


class ActionAskNewsletterConsent(Action):
    def name(self) -> Text:
        return "action_ask_newsletter_consent"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        email = tracker.get_slot("newsletter_email")
        dispatcher.utter_message(
            text=f"May I send our newsletter to {email}? \"{consent_wording()}\" Please answer yes or no.",
            buttons=[{"title": "Yes, subscribe me", "payload": "/affirm"}, {"title": "No thanks", "payload": "/deny"}],
        )
        return []


class ActionNewsletterSubscribe(Action):
    def name(self) -> Text:
        return "action_newsletter_subscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        done = [SlotSet("newsletter_consent", None)]
        if tracker.get_slot("newsletter_consent") is not True:
            dispatcher.utter_message(text="Alright, I haven't subscribed you. Anything else I can help with?")
            return done
        try:
            with session_scope() as session:
                result = subscribe(session, tracker.get_slot("newsletter_email"), SOURCE, datetime.utcnow(),
                                   consent_text=consent_wording())
        except NewsletterError as error:
            dispatcher.utter_message(text=error.message)
            return done + [SlotSet("newsletter_email", None)]
        except SQLAlchemyError:
            logger.exception("Newsletter subscribe failed")
            say_shop_data_unavailable(dispatcher)
            return done
        dispatcher.utter_message(text=result.message)
        return done


class ActionNewsletterUnsubscribe(Action):
    def name(self) -> Text:
        return "action_newsletter_unsubscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                result = unsubscribe(session, tracker.get_slot("newsletter_email"), source=SOURCE)
        except NewsletterError as error:
            dispatcher.utter_message(text=error.message)
            return [SlotSet("newsletter_email", None)]
        except SQLAlchemyError:
            logger.exception("Newsletter unsubscribe failed")
            say_shop_data_unavailable(dispatcher)
            return []
        dispatcher.utter_message(text=result.message)
        return []
