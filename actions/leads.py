"""Bulk and team enquiries: the qualification questions, the scored lead, and a person or a call-back for hot ones.

- lead_form asks what is needed, how many, company, role, budget, timeline, email and consent; every question
  but the need, the email and the consent can be skipped ("skip", "don't know", "rather not say"). "stop" or
  "cancel" ends it and nothing is kept.
- action_submit_lead stores the lead (shop.leads: one per conversation, so a repeated submission never adds
  a second), says its stage and why in plain words, and offers a hot lead "Talk to a person now"
  (/talk_to_human, the handoff) or "Call me back" (/request_callback).
- lead_callback_form asks for a phone number (only when this chat has a lead) and action_lead_callback keeps
  it on the lead. The CRM gets leads from the worker (shop.leads.deliver_due_leads), never from the chat.
"""
import logging
import re
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from shop.db import session_scope
from shop.leads import (
    LeadAnswers,
    LeadError,
    find_email,
    is_skip,
    lead_for_conversation,
    parse_budget,
    parse_phone,
    parse_quantity,
    record_callback,
    store_lead,
)
from shop.settings import shop_settings

logger = logging.getLogger(__name__)

FORM = "lead_form"
# The slot's value when the shopper chose not to answer: filled, so the form moves on, but never stored.
SKIPPED = "skipped"
FORM_SLOTS = ("lead_need", "lead_quantity", "lead_company", "lead_role", "lead_budget", "lead_timeline",
              "lead_email", "lead_consent", "lead_outcome")
REQUIRED = ("lead_need", "lead_email")  # "no" to these ends the questions; to the others it skips them
STOP = re.compile(r"^\s*(stop|cancel|quit|exit|forget (it|about it)|never ?mind|i'?ve changed my mind"
                  r"|changed my mind|not interested|no longer interested)\b", re.IGNORECASE)
CONSENT_TEXT = ("{shop}'s sales team may contact me at {email} about this enquiry and keep my answers for that "
                "purpose only.")
STAGE_WORDS = {
    "hot": "a strong fit we can act on right away",
    "warm": "a good fit; our sales team will follow up",
    "cold": "an early-stage enquiry; our sales team will send you what they can",
}
UNAVAILABLE = ("Sorry, I can't save your enquiry right now. I've kept your answers: ask about bulk orders again "
               "in a minute and I'll pass them on without asking again.")
SKIP_BUTTON = {"title": "Skip", "payload": "skip"}
HOT_BUTTONS = [{"title": "Talk to a person now", "payload": "/talk_to_human"},
               {"title": "Call me back", "payload": "/request_callback"}]


def consent_wording(email: Text) -> Text:
    return CONSENT_TEXT.format(shop=shop_settings().name, email=email)


def _answer(tracker: Tracker, slot: Text) -> Optional[Text]:
    value = tracker.get_slot(slot)
    return None if value in (None, SKIPPED) else str(value)


def answers_from(tracker: Tracker) -> LeadAnswers:
    quantity, budget = _answer(tracker, "lead_quantity"), _answer(tracker, "lead_budget")
    return LeadAnswers(
        email=_answer(tracker, "lead_email") or "", company=_answer(tracker, "lead_company") or "",
        role=_answer(tracker, "lead_role") or "", quantity=int(quantity) if quantity else None,
        budget_cents=int(budget) if budget else None, timeline=_answer(tracker, "lead_timeline") or "",
        need=_answer(tracker, "lead_need") or "",
    )


def _text(value: Any) -> Text:
    return " ".join(str(value or "").split())


class ValidateLeadForm(FormValidationAction):
    def name(self) -> Text:
        return f"validate_{FORM}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        requested = tracker.get_slot("requested_slot")
        # only a message the form took as the answer can stop it ("stop, get me a person" goes to the handoff);
        # the form hands over no candidate when it comes back after a digression, so this is the new message
        answered = requested in tracker.slots_to_validate()
        if answered and self._wants_to_stop(tracker, requested):
            dispatcher.utter_message(text="Alright, I've stopped there and kept none of your answers. "
                                          "Anything else I can help with?")
            return [SlotSet(requested, None), SlotSet("lead_outcome", "stopped"), SlotSet("requested_slot", None)]
        return await super().run(dispatcher, tracker, domain)

    @staticmethod
    def _wants_to_stop(tracker: Tracker, requested: Text) -> bool:
        text = (tracker.latest_message or {}).get("text") or ""
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        return bool(STOP.match(text)) or (requested in REQUIRED and intent == "deny")

    async def extract_lead_email(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        """The email given at checkout in this chat is not asked for again (the consent question names it)."""
        if tracker.get_slot("lead_email") is None and tracker.get_slot("cart_checkout_email"):
            return {"lead_email": tracker.get_slot("cart_checkout_email")}
        return {}

    @staticmethod
    def _skippable(slot: Text, value: Any, tracker: Tracker) -> Optional[Dict[Text, Any]]:
        """{slot: SKIPPED} when the shopper passed on the question ("skip", "no idea", a plain "no")."""
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        if is_skip(value) or (intent in ("deny", "no_preference") and len(_text(value).split()) <= 4):
            return {slot: SKIPPED}
        return None

    async def validate_lead_need(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        need = _text(value)
        if is_skip(need) or len(need) < 3:
            dispatcher.utter_message(text="Just a few words about what you'd like is enough, for example "
                                          "\"150 embroidered hoodies for our staff\".")
            return {"lead_need": None}
        return {"lead_need": need}

    async def validate_lead_quantity(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        skipped = self._skippable("lead_quantity", value, tracker)
        if skipped:
            return skipped
        try:
            return {"lead_quantity": str(parse_quantity(value))}
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return {"lead_quantity": None}

    async def validate_lead_company(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._skippable("lead_company", value, tracker) or {"lead_company": _text(value)}

    async def validate_lead_role(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._skippable("lead_role", value, tracker) or {"lead_role": _text(value)}

    async def validate_lead_budget(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        skipped = self._skippable("lead_budget", value, tracker)
        if skipped:
            return skipped
        quantity = _answer(tracker, "lead_quantity")
        try:
            return {"lead_budget": str(parse_budget(value, int(quantity) if quantity else None))}
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return {"lead_budget": None}

    async def validate_lead_timeline(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        return self._skippable("lead_timeline", value, tracker) or {"lead_timeline": _text(value)}

    async def validate_lead_email(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        try:
            return {"lead_email": find_email(value)}
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return {"lead_email": None}


class ActionAskLeadQuestion(Action, ABC):
    """Asks one question of the lead form; the optional ones come with a Skip button."""

    skippable = True

    @abstractmethod
    def question(self) -> Text:
        """The question, with an example answer."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        dispatcher.utter_message(text=self.question(), buttons=[SKIP_BUTTON] if self.skippable else [])
        return []


class ActionAskLeadNeed(ActionAskLeadQuestion):
    skippable = False

    def name(self) -> Text:
        return "action_ask_lead_need"

    def question(self) -> Text:
        return "What would you like to order? A few words are enough, like \"150 embroidered hoodies for our staff\"."


class ActionAskLeadQuantity(ActionAskLeadQuestion):
    def name(self) -> Text:
        return "action_ask_lead_quantity"

    def question(self) -> Text:
        return "Roughly how many units do you need, or how many people is it for?"


class ActionAskLeadCompany(ActionAskLeadQuestion):
    def name(self) -> Text:
        return "action_ask_lead_company"

    def question(self) -> Text:
        return "Which company or organisation is it for?"


class ActionAskLeadRole(ActionAskLeadQuestion):
    def name(self) -> Text:
        return "action_ask_lead_role"

    def question(self) -> Text:
        return "What's your role there? For example owner, office manager or buyer."


class ActionAskLeadBudget(ActionAskLeadQuestion):
    def name(self) -> Text:
        return "action_ask_lead_budget"

    def question(self) -> Text:
        return "Do you have a budget in mind? A rough total like $5,000, or \"$20 each\", is fine."


class ActionAskLeadTimeline(ActionAskLeadQuestion):
    def name(self) -> Text:
        return "action_ask_lead_timeline"

    def question(self) -> Text:
        return "When do you need it? For example \"in 3 weeks\", \"next month\" or \"by September\"."


class ActionAskLeadEmail(ActionAskLeadQuestion):
    skippable = False

    def name(self) -> Text:
        return "action_ask_lead_email"

    def question(self) -> Text:
        return "Which email address should our sales team reply to?"


class ActionAskLeadPhone(ActionAskLeadQuestion):
    skippable = False

    def name(self) -> Text:
        return "action_ask_lead_phone"

    def question(self) -> Text:
        return "Which phone number should we call? Please include the country or area code."


class ActionAskLeadConsent(Action):
    def name(self) -> Text:
        return "action_ask_lead_consent"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        wording = consent_wording(tracker.get_slot("lead_email"))
        dispatcher.utter_message(
            text=f"Last question: is this OK? \"{wording}\" Please answer yes or no.",
            buttons=[{"title": "Yes, that's fine", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}],
        )
        return []


class ActionSubmitLead(Action):
    def name(self) -> Text:
        return "action_submit_lead"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        done = [SlotSet(name, None) for name in FORM_SLOTS]
        if tracker.get_slot("lead_outcome") == "stopped":
            return done
        if tracker.get_slot("lead_consent") is not True:
            dispatcher.utter_message(text="Alright, I haven't kept any of your answers. If you'd like an offer "
                                          "later, just ask about bulk orders again.")
            return done
        answers = answers_from(tracker)
        try:
            with session_scope() as session:
                lead = store_lead(session, tracker.sender_id, answers, consent=True,
                                  consent_text=consent_wording(answers.email), now=datetime.utcnow())
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return done
        except SQLAlchemyError:
            logger.exception("Storing a lead failed")
            dispatcher.utter_message(text=UNAVAILABLE)
            return []  # the filled form stays, so asking again submits the same answers
        if not lead.changed:
            opening = f"I already have exactly this enquiry from you, so I haven't added it twice; our sales " \
                      f"team will reply to {lead.email}."
        elif not lead.created:
            opening = f"Thanks, I've updated your enquiry; our sales team will reply to {lead.email}."
        else:
            opening = f"Thanks! I've passed your enquiry to our sales team; they'll reply to {lead.email}."
        reasons = "; ".join(lead.reasons)
        dispatcher.utter_message(text=f"{opening} From what you told me it's {STAGE_WORDS[lead.stage]} "
                                      f"({lead.stage}): {reasons}.")
        if lead.stage == "hot":
            # A separate last message: the web chat shows only the latest message's buttons.
            dispatcher.utter_message(text="Would you like to talk to someone from our team now, or shall we "
                                          "call you back?", buttons=HOT_BUTTONS)
        return done


class ValidateLeadCallbackForm(FormValidationAction):
    """Asks for a phone number only when this chat has a lead to attach the call-back to."""

    def name(self) -> Text:
        return "validate_lead_callback_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> List[Text]:
        try:
            with session_scope() as session:
                has_lead = lead_for_conversation(session, tracker.sender_id) is not None
        except SQLAlchemyError:
            logger.exception("Looking up the lead for a call-back failed")
            has_lead = False
        return domain_slots if has_lead else []

    async def validate_lead_phone(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        try:
            return {"lead_phone": parse_phone(value)}
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return {"lead_phone": None}


class ActionLeadCallback(Action):
    def name(self) -> Text:
        return "action_lead_callback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        done = [SlotSet("lead_phone", None)]
        try:
            with session_scope() as session:
                lead = record_callback(session, tracker.sender_id, tracker.get_slot("lead_phone") or "",
                                       now=datetime.utcnow())
                phone = lead.callback_phone
        except LeadError as error:
            dispatcher.utter_message(text=error.message)
            return done
        except SQLAlchemyError:
            logger.exception("Recording a call-back failed")
            dispatcher.utter_message(text="Sorry, I can't arrange the call-back right now. Please try again in a "
                                          "minute.")
            return done
        dispatcher.utter_message(text=f"Done: someone from our sales team will call you on {phone} during "
                                      "business hours. Anything else I can help with?")
        return done
