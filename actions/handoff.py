"""Handing the chat to a person (see shop.handoff for the states) and taking it back.

- action_handoff_request: the shopper asked for a person, complained, wrote in strong frustration
  (channels/webchat.py) or took a hot lead's offer of a person; queues the chat when the
  team is on duty, else sets handoff_status=unavailable so the rules start handoff_ticket_form.
- action_handoff_payment_problem: the same with the reason payment_problem, for other topics'
  rules and stories to run when a payment goes wrong.
- action_handoff_no_agent: run by the agent console (Rasa's /execute API) when nobody claimed the
  chat in time: says so and starts the ticket form itself, because no policy runs after /execute.
- action_handoff_resume: run by the console when the agent resolves: the bot is back and asks
  for a rating of the agent's help (buttons send rate_help, handled by action_handoff_rate).
"""
import re
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.feedback import note_feedback_asked, rate_the_chat, record_complaint_of
from shop.db import session_scope
from shop.handoff import (
    HandoffError,
    REASONS,
    HandoffRequest,
    create_ticket,
    open_handoff,
    record_rating,
    record_unanswered,
    request_handoff,
    support_settings,
)
from shop.leads import lead_for_conversation
from shop.verification import verified_email

TICKET_FORM = "handoff_ticket_form"
# Slots worth showing the agent, so the shopper does not have to repeat themselves.
CONTEXT_SLOTS = ("category", "color", "size", "brand", "price_max", "current_product", "shown_products",
                 "cart_checkout_email", "preferences")
EMAIL_QUESTION = "What email address should our team reply to?"
SUMMARY_QUESTION = "In a sentence or two, what do you need help with?"
_EMAIL_IN_TEXT = re.compile(r"[^\s@<>]+@[^\s@<>]+\.[A-Za-z]{2,}")


def reason_for(tracker: Tracker) -> Text:
    """Why the shopper wants a person: a button or the chat channel's frustration check may say so
    (the handoff_reason entity), else the intent does."""
    named = next(tracker.get_latest_entity_values("handoff_reason"), None)
    if named in REASONS:
        return named
    intent = (tracker.latest_message.get("intent") or {}).get("name")
    if intent == "complaint":
        return "complaint"
    # A hot sales lead asking for a person (its "Talk to a person now" button, or in words) is a sales handoff.
    with session_scope() as session:
        lead = lead_for_conversation(session, tracker.sender_id)
        return "hot_lead" if lead is not None and lead.stage == "hot" else "talk_to_human"


def context_of(tracker: Tracker) -> Dict[Text, Any]:
    return {name: tracker.get_slot(name) for name in CONTEXT_SLOTS if tracker.get_slot(name) not in (None, [], {})}


def _when_back_text(now=None) -> Text:
    settings = support_settings()
    opening = settings.next_opening(now)
    return f"Our team works {settings.hours_text()} and is next available {opening:%A %d %B at %H:%M}."


def queue_for_a_person(dispatcher: CollectingDispatcher, tracker: Tracker, reason: Text) -> List[EventType]:
    """Queue the chat for an agent, or record that nobody is on duty; the slot tells the rules which."""
    # Every complaint counts (shop.feedback), whether a person takes the chat or it becomes a ticket.
    if reason == "complaint":
        record_complaint_of(tracker)
    if reason == "frustration":
        dispatcher.utter_message(text="I'm sorry this has been so frustrating.")
    settings = support_settings()
    with session_scope() as session:
        if not settings.is_open():
            record_unanswered(session, tracker.sender_id, reason, context_of(tracker))
            dispatcher.utter_message(
                text=f"I'm sorry, nobody from our team is available right now. {_when_back_text()} "
                     "I can take a message for them and they'll get back to you by email."
            )
            return [SlotSet("handoff_reason", reason), SlotSet("handoff_status", "unavailable")]
        already_queued = open_handoff(session, tracker.sender_id) is not None
        request_handoff(session, tracker.sender_id, reason, context_of(tracker))
    if already_queued:
        dispatcher.utter_message(text="You're already in the queue for a person from our team; they'll join shortly.")
    else:
        minutes = max(1, round(settings.wait_seconds / 60))
        dispatcher.utter_message(
            text=f"I'm getting a person from our team for you; someone should join within {minutes} "
                 f"minute{'s' if minutes != 1 else ''}. They'll see our conversation so far, so you won't "
                 "need to repeat yourself."
        )
    return [SlotSet("handoff_reason", reason), SlotSet("handoff_status", "waiting")]


class HandoffAction(Action, ABC):
    @abstractmethod
    def reason(self, tracker: Tracker) -> Text:
        """Why this chat goes to a person (one of shop.handoff.REASONS)."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        return queue_for_a_person(dispatcher, tracker, self.reason(tracker))


class ActionHandoffRequest(HandoffAction):
    def name(self) -> Text:
        return "action_handoff_request"

    def reason(self, tracker: Tracker) -> Text:
        return reason_for(tracker)


class ActionHandoffPaymentProblem(HandoffAction):
    """For the payment topic's rules: a failed or confusing payment goes straight to a person."""

    def name(self) -> Text:
        return "action_handoff_payment_problem"

    def reason(self, tracker: Tracker) -> Text:
        return "payment_problem"


def _known_email(tracker: Tracker) -> Optional[Text]:
    with session_scope() as session:
        return verified_email(session, tracker.sender_id) or tracker.get_slot("cart_checkout_email")


class ActionHandoffNoAgent(Action):
    """Nobody claimed the chat within SHOP_HANDOFF_WAIT_SECONDS: be honest and take a message."""

    def name(self) -> Text:
        return "action_handoff_no_agent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(
            text="I'm sorry, everyone on our team is busy and nobody could join in time. "
                 "Let me take a message instead and they'll get back to you by email."
        )
        email = _known_email(tracker)
        next_slot = "handoff_summary" if email else "handoff_email"
        dispatcher.utter_message(text=EMAIL_QUESTION if next_slot == "handoff_email" else SUMMARY_QUESTION)
        return [SlotSet("handoff_status", "unavailable"), SlotSet("handoff_email", email),
                ActiveLoop(TICKET_FORM), SlotSet("requested_slot", next_slot)]


class ActionAskHandoffEmail(Action):
    def name(self) -> Text:
        return "action_ask_handoff_email"

    async def run(self, dispatcher, tracker, domain) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(text=EMAIL_QUESTION)
        return []


class ActionAskHandoffSummary(Action):
    def name(self) -> Text:
        return "action_ask_handoff_summary"

    async def run(self, dispatcher, tracker, domain) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(text=SUMMARY_QUESTION)
        return []


class ValidateHandoffTicketForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_handoff_ticket_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> List[Text]:
        return domain_slots

    async def extract_handoff_email(self, dispatcher, tracker, domain) -> Dict[Text, Any]:
        """An email the shopper already proved (or gave at checkout) is not asked for again."""
        if tracker.get_slot("handoff_email") or tracker.get_slot("requested_slot") == "handoff_email":
            return {}
        known = _known_email(tracker)
        return {"handoff_email": known} if known else {}

    async def validate_handoff_email(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        found = _EMAIL_IN_TEXT.search(str(value or ""))
        if not found:
            dispatcher.utter_message(text="That doesn't look like an email address. Please type it like name@example.com.")
            return {"handoff_email": None}
        return {"handoff_email": found.group(0).lower()}

    async def validate_handoff_summary(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        text = str(value or "").strip()
        if len(text) < 3:
            dispatcher.utter_message(text="Please tell me in a few words what the problem is.")
            return {"handoff_summary": None}
        return {"handoff_summary": text}


class ActionHandoffCreateTicket(Action):
    def name(self) -> Text:
        return "action_handoff_create_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        clear = [SlotSet("handoff_email", None), SlotSet("handoff_summary", None), SlotSet("handoff_status", None)]
        try:
            with session_scope() as session:
                ticket = create_ticket(session, tracker.sender_id, tracker.get_slot("handoff_email"),
                                       tracker.get_slot("handoff_summary"),
                                       tracker.get_slot("handoff_reason") or "talk_to_human")
                number, email = ticket.number, ticket.contact
        except HandoffError as error:
            dispatcher.utter_message(text=f"I couldn't create the ticket: {error.message}")
            return clear
        dispatcher.utter_message(
            text=f"Thanks! I've created ticket {number} for our team. They'll reply to {email} "
                 "during support hours; mention the ticket number if you write to us."
        )
        return clear


class ActionHandoffResume(Action):
    """The agent resolved the chat: the bot is back and asks how the person helped."""

    def name(self) -> Text:
        return "action_handoff_resume"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        with session_scope() as session:
            latest = session.execute(
                select(HandoffRequest).where(HandoffRequest.conversation_id == tracker.sender_id,
                                             HandoffRequest.status == "resolved")
                .order_by(HandoffRequest.id.desc())
            ).scalars().first()
            agent = latest.agent if latest else "our team"
        dispatcher.utter_message(text="I'm back. Anything else I can help with?")
        dispatcher.utter_message(
            text=f"Also, how would you rate the help you got from {agent}, from 1 (poor) to 5 (excellent)?",
            buttons=[{"title": str(stars), "payload": f'/rate_help{{"handoff_rating": "{stars}"}}'}
                     for stars in range(1, 6)],
        )
        # That question is this conversation's survey: the shop's own 1-5 question is not asked as well.
        note_feedback_asked(tracker, "handoff")
        return [SlotSet("handoff_status", None)]


class ActionHandoffRate(Action):
    def name(self) -> Text:
        return "action_handoff_rate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        given = next(tracker.get_latest_entity_values("handoff_rating"), None) or tracker.latest_message.get("text")
        try:
            with session_scope() as session:
                handoff = record_rating(session, tracker.sender_id, given)
                agent, stars = handoff.agent, handoff.rating
        except HandoffError as error:
            if error.code != "nothing_to_rate":
                dispatcher.utter_message(text=error.message)
                return []
            # No agent to rate: "5 stars" then rates this chat, as the survey's buttons would.
            rate_the_chat(dispatcher, tracker, given)
            return []
        dispatcher.utter_message(text=f"Thank you! I've passed your {stars}/5 on to {agent}.")
        return []
