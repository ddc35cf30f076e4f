"""Identity verification inside every order form, and the base class those forms share.

Nothing about an order is said before the conversation is verified (shop.verification keeps that
state per conversation id in the database, so it survives restarts and holds for the session).
Each order form (status, change, cancel, return, refund) first asks for the order number plus the
email or postcode of the order, or, if the shopper prefers, emails a one-time code; only then
does it ask its own questions. The validation action reads every answer straight from the latest
message, so answers work whether or not the NLU tagged them as entities.
"""
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from shop.db import session_scope
from shop.mailer import SmtpMailer
from shop.orders import InvalidOrderNumber, OrderNotFound, find_order, normalise_order_number
from shop.verification import (
    NotVerified,
    lock_status,
    send_code,
    verified_email,
    verify_by_order_details,
    verify_code,
)

VERIFICATION_SLOTS = ("order_identity", "order_verify_method", "order_code_email", "order_code")
# Slots an order form fills for one request; cleared when the request is answered. order_number stays,
# so "cancel it" right after "where is SH-100001" is about that order.
REQUEST_SLOTS = VERIFICATION_SLOTS + (
    "order_request_text", "order_scope", "order_change_kind", "order_change_item", "order_change_quantity", "order_new_address",
    "order_confirm", "order_return_items", "order_return_reason", "order_return_resolution", "order_outcome",
)
# Questions answered from the policy file in the middle of a form; the form then asks again.
DIGRESSION_INTENTS = {
    "return_policy", "delivery_time", "shipping_options", "payment_methods", "contact_info",
    "create_account", "recover_password", "help", "greet", "goodbye", "thank", "talk_to_human",
}
CODE_INTENT = "send_code"

ORDER_NUMBER = re.compile(r"(?<![\w@.])#?\s*(?:sh\s*[-_#]?\s*)?\d{6,9}(?![\w@])", re.IGNORECASE)
ORDER_NUMBER_LIKE = re.compile(r"\b(?:sh|order)\b|#", re.IGNORECASE)
EMAIL = re.compile(r"[^@\s\"'<>(){}\[\],;]+@[^@\s\"'<>(){}\[\],;]+\.[A-Za-z]{2,}")
SIX_DIGITS = re.compile(r"(?<![\w-])(\d{3}[\s-]?\d{3})(?![\w-])")
POSTCODE = re.compile(
    r"\b(\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|[A-Z]\d[A-Z]\s*\d[A-Z]\d|\d{4}\s?[A-Z]{2})\b",
    re.IGNORECASE,
)
WANTS_CODE = re.compile(r"\b(code|otp|pin|verify (me )?by email|by e-?mail)\b", re.IGNORECASE)

VERIFY_PROMPT = ("To keep your orders private, I need to check it's you first. What's the order number? It's in "
                 "your confirmation email and looks like SH-100001. No order number to hand? I can email you a "
                 "6-digit code instead.")
CODE_BUTTON = {"title": "Email me a code", "payload": "/send_code"}


def conversation_of(tracker: Tracker) -> Text:
    return tracker.sender_id


def mailer() -> SmtpMailer:
    """The SMTP mailer, configured from SMTP_* at each use (see shop.mailer)."""
    return SmtpMailer()


@dataclass
class Said:
    """The shopper's latest message, as the order forms read it."""

    text: Text
    intent: Optional[Text]
    entities: Dict[Text, Text] = field(default_factory=dict)

    @classmethod
    def of(cls, tracker: Tracker) -> "Said":
        message = tracker.latest_message or {}
        entities: Dict[Text, Text] = {}
        for found in message.get("entities") or []:
            entities.setdefault(found.get("entity"), str(found.get("value")))
        text = message.get("text") or ""
        if text.startswith("/"):  # a button payload: only its entities count as what was said
            text = " ".join(entities.values())
        return cls(text, (message.get("intent") or {}).get("name"), entities)

    @property
    def is_digression(self) -> bool:
        return self.intent in DIGRESSION_INTENTS

    def order_number(self) -> Optional[Text]:
        if self.entities.get("order_number"):
            return self.entities["order_number"]
        match = ORDER_NUMBER.search(self.text)
        return match.group(0).strip() if match else None

    def email(self) -> Optional[Text]:
        match = EMAIL.search(self.entities.get("email") or self.text)
        return match.group(0).strip().rstrip(".") if match else None

    def code(self) -> Optional[Text]:
        if self.entities.get("otp_code"):
            return self.entities["otp_code"]
        match = SIX_DIGITS.search(self.text)
        return match.group(1) if match else None

    def postcode(self) -> Optional[Text]:
        if self.entities.get("postcode"):
            return self.entities["postcode"]
        match = POSTCODE.search(self.text)
        if match:
            return match.group(1)
        short = self.text.strip()
        return short if 3 <= len(short) <= 10 and any(ch.isdigit() for ch in short) else None


def message_is_new_to_form(tracker: Tracker, form_name: Text) -> bool:
    """Whether the shopper's latest message is still to be read by the form.

    Rasa runs validate_<form> on a copy of the tracker that ends with the form's own execution, so
    latest_action_name is always the form itself. The message is new when the last action before the
    form's was action_listen: nothing (a digression's answer, say) has run since the shopper spoke.
    """
    executed = [event.get("name") for event in tracker.events if event.get("event") == "action"]
    while executed and executed[-1] == form_name:
        executed.pop()
    if not executed:
        return tracker.latest_action_name in ("action_listen", form_name)
    return executed[-1] == "action_listen"


class FormState:
    """The form's slots as this run sees them, and which of them it changed."""

    def __init__(self, tracker: Tracker, names):
        self.requested: Optional[Text] = tracker.get_slot("requested_slot")
        self.values: Dict[Text, Any] = {name: tracker.get_slot(name) for name in names}
        self.changed: Dict[Text, Any] = {}

    def get(self, name: Text) -> Any:
        return self.values.get(name)

    def put(self, name: Text, value: Any) -> None:
        self.values[name] = value
        self.changed[name] = value

    def clear(self, *names: Text) -> None:
        for name in names:
            self.put(name, None)


class OrderFormValidation(Action, ABC):
    """validate_<form> for the order forms: verification first, then the topic's own questions.

    Returning no slot event while a slot was requested tells Rasa the message was not an answer,
    so a rule can handle it (a digression) before the form asks again.
    """

    @abstractmethod
    def form_name(self) -> Text:
        """The form this action validates."""

    @abstractmethod
    def continue_verified(self, session: Session, owner: Text, said: Optional[Said], state: FormState,
                          dispatcher: CollectingDispatcher) -> Optional[Text]:
        """Read the topic's answers from `said`, check them, and return the next slot to ask (None: done).

        Sets state "order_outcome" to "refused" when the request cannot go ahead (after explaining why).
        """

    @abstractmethod
    def topic_answered(self, said: Said, requested: Optional[Text], state: FormState) -> bool:
        """Whether `said` answers one of the topic's own questions (so it is no digression)."""

    def name(self) -> Text:
        return f"validate_{self.form_name()}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        requested = tracker.get_slot("requested_slot")
        # a fresh message is read once; after a digression the form only asks again
        said = Said.of(tracker) if message_is_new_to_form(tracker, self.form_name()) else None
        state = FormState(tracker, ("order_number",) + REQUEST_SLOTS)
        if said is not None and requested and said.is_digression:
            return []
        if said is not None and requested and requested != "order_confirm" and said.intent == "deny":
            dispatcher.utter_message(text="Alright, I've stopped there and nothing was changed. "
                                          "Anything else I can help with?")
            state.put("order_outcome", "stopped")
            return self._events(state, None)
        with session_scope() as session:
            conversation = conversation_of(tracker)
            owner = verified_email(session, conversation)
            if owner is None:
                locked = lock_status(session, conversation)
                if locked:
                    dispatcher.utter_message(text=locked.message)
                    state.put("order_outcome", "locked")
                    return self._events(state, None)
                if said is not None and not requested:
                    # what the shopper asked for ("remove the socks from SH-100001") is read once they're verified
                    state.put("order_request_text", said.text)
                answered = self._read_verification(said, requested, state, dispatcher) if said else False
                owner, next_slot = self._verify(session, conversation, state, dispatcher)
                if owner is None:
                    if said is not None and requested and not answered:
                        return []
                    return self._events(state, next_slot)
                said_for_topic = Said(state.get("order_request_text") or "", None)
                state.requested = None
            else:
                answered = said is not None and self.topic_answered(said, requested, state)
                if said is not None and requested and not answered:
                    return []
                said_for_topic = said
            next_slot = self.continue_verified(session, owner, said_for_topic, state, dispatcher)
        return self._events(state, next_slot)

    @staticmethod
    def _events(state: FormState, next_slot: Optional[Text]) -> List[Dict[Text, Any]]:
        return [SlotSet(name, value) for name, value in state.changed.items()] + [SlotSet("requested_slot", next_slot)]

    # ---------------------------------------------------------------- reading answers

    @staticmethod
    def _read_verification(said: Said, requested: Optional[Text], state: FormState,
                           dispatcher: CollectingDispatcher) -> bool:
        answered = False
        if said.intent == CODE_INTENT or (requested in (None, "order_number") and WANTS_CODE.search(said.text)):
            state.put("order_verify_method", "code")
            state.clear("order_code", "order_code_email")
            answered = True
        if state.get("order_verify_method") == "code":
            if requested == "order_code" and said.code():
                state.put("order_code", said.code())
                return True
            if said.email():
                state.put("order_code_email", said.email())
                return True
            if requested in ("order_code", "order_code_email") and said.text.strip():
                dispatcher.utter_message(
                    text="The code has 6 digits; please type it as it is in the email."
                    if requested == "order_code" else "That doesn't look like an email address; please check it.")
                return True
            return answered
        number = said.order_number()
        if number:
            state.put("order_number", number)
            answered = True
        elif requested == "order_number" and said.text.strip() and (
                said.intent in ("inform", "nlu_fallback") or ORDER_NUMBER_LIKE.search(said.text)):
            dispatcher.utter_message(text=InvalidOrderNumber(said.text).message)
            state.clear("order_number")
            return True
        detail = said.email() or (said.postcode() if requested == "order_identity" or number else None)
        if detail and (state.get("order_number") or requested == "order_identity"):
            if detail != number:
                state.put("order_identity", detail)
                answered = True
        elif requested == "order_identity" and said.text.strip():
            dispatcher.utter_message(text="Please give the email address or the delivery postcode of the order.")
            return True
        return answered

    # ---------------------------------------------------------------- checking them

    def _verify(self, session: Session, conversation: Text, state: FormState,
                dispatcher: CollectingDispatcher):
        """(verified email, None) or (None, the verification slot to ask next)."""
        if state.get("order_verify_method") == "code":
            if state.changed.get("order_code_email"):
                result = send_code(session, conversation, state.get("order_code_email"), mailer())
                dispatcher.utter_message(text=result.message)
                if result.code == "locked":
                    return None, self._stop_locked(state)
                if not result.ok:
                    state.clear("order_code_email")
                    return None, "order_code_email"
                return None, "order_code"
            if state.changed.get("order_code"):
                result = verify_code(session, conversation, state.get("order_code"))
                state.clear("order_code")
                if result.verified:
                    dispatcher.utter_message(text="Thanks, that's the right code: you're verified.")
                    state.clear(*VERIFICATION_SLOTS)
                    return result.email, None
                dispatcher.utter_message(text=result.message)
                if result.code == "locked":
                    return None, self._stop_locked(state)
                if result.code == "no_active_code":
                    state.clear("order_code_email")
                    return None, "order_code_email"
                return None, "order_code"
            return None, "order_code" if state.get("order_code_email") else "order_code_email"
        number, detail = state.get("order_number"), state.get("order_identity")
        if number and not detail and state.changed.get("order_number"):
            try:
                state.put("order_number", normalise_order_number(number))
            except InvalidOrderNumber as refusal:
                dispatcher.utter_message(text=refusal.message)
                state.clear("order_number")
                return None, "order_number"
        if not number:
            return None, "order_number"
        if not detail:
            return None, "order_identity"
        result = verify_by_order_details(session, conversation, number, detail)
        state.clear("order_identity")
        if result.verified:
            state.put("order_number", normalise_order_number(number))
            state.clear(*VERIFICATION_SLOTS)
            dispatcher.utter_message(text="Thanks, you're verified.")
            return result.email, None
        if result.code == "locked":
            dispatcher.utter_message(text=result.message)
            return None, self._stop_locked(state)
        state.clear("order_number")
        if result.code == "order_rate_limited":
            dispatcher.utter_message(text=result.message, buttons=[CODE_BUTTON])
            return None, "order_number"
        tries = f" ({result.attempts_left} tries left)" if result.attempts_left else ""
        dispatcher.utter_message(text=result.message + tries)
        return None, "order_number"

    @staticmethod
    def _stop_locked(state: FormState) -> None:
        state.clear(*VERIFICATION_SLOTS)
        state.put("order_outcome", "locked")
        return None

    # ---------------------------------------------------------------- helpers for the topics

    @staticmethod
    def take_order_number(session: Session, owner: Text, said: Optional[Said], requested: Optional[Text],
                          state: FormState, dispatcher: CollectingDispatcher) -> None:
        """A number the verified shopper named (or tapped): kept if it is theirs, explained otherwise."""
        if said is None:
            return
        number = said.order_number()
        if not number:
            if requested == "order_number" and said.text.strip():
                dispatcher.utter_message(text=InvalidOrderNumber(said.text).message)
                state.clear("order_number")
            return
        try:
            state.put("order_number", find_order(session, number, owner_email=owner).number)
        except (InvalidOrderNumber, OrderNotFound) as refusal:
            dispatcher.utter_message(text=refusal.message)
            state.clear("order_number")


def verified_owner(session: Session, tracker: Tracker) -> Optional[Text]:
    return verified_email(session, conversation_of(tracker))


def reset_request() -> List[Dict[Text, Any]]:
    return [SlotSet(name, None) for name in REQUEST_SLOTS]


def explain_not_verified(tracker: Tracker, dispatcher: CollectingDispatcher) -> None:
    """After a form that ended without verification: the lock or stop was already explained."""
    if tracker.get_slot("order_outcome") not in ("locked", "stopped"):
        dispatcher.utter_message(text=NotVerified.message)


class ActionAskOrderIdentity(Action):
    def name(self) -> Text:
        return "action_ask_order_identity"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Thanks. And the email address or the delivery postcode on that order?")
        return []


class ActionAskOrderCodeEmail(Action):
    def name(self) -> Text:
        return "action_ask_order_code_email"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Sure. What's the email address you used with us? I'll send a 6-digit code there.")
        return []


class ActionAskOrderCode(Action):
    def name(self) -> Text:
        return "action_ask_order_code"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Please type the 6-digit code from the email.",
                                 buttons=[{"title": "Send a new code", "payload": "/send_code"}])
        return []
