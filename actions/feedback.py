"""Feedback in the chat: the 1-5 survey after a finished flow, ratings given any time, complaints.

- ask_for_feedback_once: called at the end of the flows that finish something (an order's status
  shown, a return created, a purchase paid); asks for a rating with five buttons
  (/give_feedback{"feedback_rating": "N"}) unless this conversation was already asked.
  note_feedback_asked: the hand-back from a person asks its own rating of the agent, so it only
  records that this conversation had its survey.
- action_record_feedback (intent give_feedback, rules in data/rules/feedback.yml): records the
  rating and sets feedback_outcome, which the rules follow: `low` (1-2) offers a person,
  `high` (3-5) starts feedback_form for an optional comment, `unclear` asks again.
- action_ask_feedback_comment / validate_feedback_form / action_save_feedback_comment: the optional
  comment, which the Skip button (deny), "skip" or "no" leaves out.
- record_complaint_of: action_handoff_request records every complaint before queueing the chat; the
  handoff ticket form then turns it into a ticket when nobody from the team can take it.
"""
import logging
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError

from shop.db import session_scope
from shop.feedback import (
    COMMENT_MAX,
    FeedbackError,
    parse_feedback_rating,
    record_complaint,
    record_feedback_comment,
    record_feedback_rating,
    start_survey,
)

logger = logging.getLogger(__name__)

RATING_BUTTONS = [{"title": f"{stars} ★", "payload": f'/give_feedback{{"feedback_rating": "{stars}"}}'}
                  for stars in range(1, 6)]
TALK_TO_A_PERSON = {"title": "Talk to a person", "payload": "/talk_to_human"}
NO_THANKS = {"title": "No thanks", "payload": "/deny"}
SKIP = {"title": "Skip", "payload": "/deny"}  # deny ends feedback_form without a comment (data/rules/feedback.yml)
SURVEY_QUESTIONS = {
    "order_help": "One quick question: how did I do helping with your order?",
    "return": "One quick question: how easy was it to set up your return?",
    "purchase": "One quick question: how was buying with me today?",
}
RATE_PROMPT = "Tap 1 (poor) to 5 (excellent), or type it, like \"4 stars\"."
# Typed answers to "anything to add?" that mean no comment (the Skip button sends deny instead).
NO_COMMENT = re.compile(r"\s*(no|nope|nah|nothing|none|skip|no thanks?|no thank you|that'?s (all|it)|"
                        r"all good|nothing (else|more)|not really|n/?a)\s*[.!]*\s*", re.IGNORECASE)


def conversation_started(tracker: Tracker) -> Optional[datetime]:
    """When the current Rasa session began; None when the tracker holds no session start."""
    for event in reversed(tracker.events):
        if event.get("event") == "session_started" and event.get("timestamp"):
            return datetime.fromtimestamp(event["timestamp"], timezone.utc)
    return None


def note_feedback_asked(tracker: Tracker, topic: Text) -> bool:
    """Records that this conversation gets its survey now; False when it already had one (or gave
    feedback unprompted), or when the database can't take it."""
    try:
        with session_scope() as session:
            return start_survey(session, tracker.sender_id, topic, conversation_started(tracker))
    except SQLAlchemyError:
        # The flow the shopper came for has succeeded; a survey that can't be stored is simply skipped.
        logger.exception("Recording the feedback survey failed")
        return False


def ask_for_feedback_once(dispatcher: CollectingDispatcher, tracker: Tracker, topic: Text) -> bool:
    """The survey question with rating buttons, once per conversation; True when it was asked now."""
    asked = note_feedback_asked(tracker, topic)
    if asked:
        dispatcher.utter_message(text=f"{SURVEY_QUESTIONS[topic]} {RATE_PROMPT}", buttons=RATING_BUTTONS)
    return asked


def record_complaint_of(tracker: Tracker) -> None:
    words = tracker.latest_message.get("text") or ""
    # A button's payload (/talk_to_human{...}) is not the shopper's words.
    with session_scope() as session:
        record_complaint(session, tracker.sender_id, "" if words.startswith("/") else words)


def _given_rating(tracker: Tracker) -> Text:
    """What to read the rating from: the message itself first ("8 out of 10" says more than the
    entity "8"), then the rating entities (ours, or the agent-rating one the classifier may pick)."""
    text = tracker.latest_message.get("text") or ""
    candidates = [] if text.startswith("/") else [text]  # a button's payload is not the shopper's words
    candidates += [str(value) for name in ("feedback_rating", "handoff_rating")
                   for value in tracker.get_latest_entity_values(name) if value not in (None, "")]
    return next((candidate for candidate in candidates if parse_feedback_rating(candidate) is not None), text)


def rate_the_chat(dispatcher: CollectingDispatcher, tracker: Tracker, given: Text) -> List[Dict[Text, Any]]:
    """Records `given` as this conversation's rating and thanks the shopper; a low one offers a person."""
    try:
        with session_scope() as session:
            recorded = record_feedback_rating(session, tracker.sender_id, given, conversation_started(tracker))
    except FeedbackError:
        dispatcher.utter_message(text=f"Thanks for wanting to rate the chat! How would you rate it, from 1 (poor) "
                                      f"to 5 (excellent)? {RATE_PROMPT}", buttons=RATING_BUTTONS)
        return [SlotSet("feedback_outcome", "unclear")]
    thanks = (f"Thanks, I've changed your rating from {recorded.previous_rating}/5 to {recorded.rating}/5."
              if recorded.previous_rating not in (None, recorded.rating)
              else f"Thank you for your {recorded.rating}/5!")
    if recorded.is_low:
        dispatcher.utter_message(
            text=f"{thanks} I'm sorry it wasn't better. Would you like to talk to a person from our team about it?",
            buttons=[TALK_TO_A_PERSON, NO_THANKS])
        return [SlotSet("feedback_outcome", "low")]
    dispatcher.utter_message(text=thanks)
    return [SlotSet("feedback_outcome", "high")]


class ActionRecordFeedback(Action):
    def name(self) -> Text:
        return "action_record_feedback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        return rate_the_chat(dispatcher, tracker, _given_rating(tracker))


class ActionAskFeedbackComment(Action):
    def name(self) -> Text:
        return "action_ask_feedback_comment"

    async def run(self, dispatcher, tracker, domain) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(text="Is there anything you'd like to add? Type it here, or tap Skip.",
                                 buttons=[SKIP])
        return []


class ValidateFeedbackForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_feedback_form"

    async def validate_feedback_comment(self, value, dispatcher, tracker, domain) -> Dict[Text, Any]:
        text = str(value or "").strip()
        # An empty comment fills the slot, so the form ends; the save action treats it as skipped.
        if not text or NO_COMMENT.fullmatch(text):
            return {"feedback_comment": ""}
        return {"feedback_comment": text[:COMMENT_MAX]}


class ActionSaveFeedbackComment(Action):
    """Ends the survey: saves the comment if there is one, and clears the survey's slots."""

    def name(self) -> Text:
        return "action_save_feedback_comment"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        comment = (tracker.get_slot("feedback_comment") or "").strip()
        if comment:
            with session_scope() as session:
                record_feedback_comment(session, tracker.sender_id, comment, conversation_started(tracker))
            dispatcher.utter_message(text="Thank you, I've passed that on to the team. Anything else I can help with?")
        else:
            dispatcher.utter_message(text="No problem. Thanks again for rating! Anything else I can help with?")
        return [SlotSet("feedback_comment", None), SlotSet("feedback_outcome", None)]
