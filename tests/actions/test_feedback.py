"""Feedback in the chat: the survey after finished flows, ratings, comments and complaints, on a real SQLite shop."""
import asyncio
import time

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.feedback import (
    ActionAskFeedbackComment,
    ActionRecordFeedback,
    ActionSaveFeedbackComment,
    ValidateFeedbackForm,
    ask_for_feedback_once,
)
from actions.handoff import ActionHandoffCreateTicket, ActionHandoffRequest, ActionHandoffResume
from actions.payment_confirmation import ActionConfirmPayment
from shop.db import session_scope
from shop.handoff import claim, request_handoff, resolve
from shop.models import Feedback, HandoffTicket
from tests.actions.test_handoff import team_off_duty, team_on_duty  # noqa: F401 - fixtures
from tests.actions.test_orders import OWNER, Chat, shop, verified_chat  # noqa: F401 - fixture
from tests.actions.trackers import entity, run, slot_events, tracker_for
from tests.unit.service_helpers import catalog, make_order

SURVEY_PAYLOADS = [f'/give_feedback{{"feedback_rating": "{stars}"}}' for stars in range(1, 6)]


def feedback_rows(engine):
    with session_scope(engine) as session:
        return [(f.conversation_id, f.topic, f.rating, f.comment, f.is_complaint)
                for f in session.scalars(select(Feedback).order_by(Feedback.id))]


def rate(text, stars=None):
    entities = [entity("feedback_rating", stars)] if stars else []
    return run(ActionRecordFeedback(), tracker_for(text, "give_feedback", entities))


def test_the_survey_is_asked_once_with_five_rating_buttons(shop_engine):
    first = CollectingDispatcher()
    assert ask_for_feedback_once(first, tracker_for("", "payment_confirmed"), "purchase") is True
    [question] = first.messages
    assert question["text"].startswith("One quick question: how was buying with me today?")
    assert [b["payload"] for b in question["buttons"]] == SURVEY_PAYLOADS

    again = CollectingDispatcher()
    assert ask_for_feedback_once(again, tracker_for("", "order_status"), "order_help") is False
    assert again.messages == []
    assert feedback_rows(shop_engine) == [("shopper-1", "purchase", None, "", False)]


def test_a_new_rasa_session_is_a_new_conversation_and_is_asked_again(shop_engine):
    ask_for_feedback_once(CollectingDispatcher(), tracker_for("", "order_status"), "order_help")
    later = tracker_for("", "start_return")
    later.events.insert(0, {"event": "session_started", "timestamp": time.time() + 60})

    dispatcher = CollectingDispatcher()
    assert ask_for_feedback_once(dispatcher, later, "return") is True
    assert "return" in dispatcher.messages[0]["text"]


def test_an_order_status_ends_with_the_survey_but_a_late_order_only_offers_a_person(shop):
    chat, reply = verified_chat()
    assert "Order SH-100001" in reply and "how did I do helping with your order?" in reply
    assert [b["payload"] for b in chat.buttons] == SURVEY_PAYLOADS

    late_chat = Chat("shopper-late")
    late_chat.say("where is order SH-100003", "order_status")
    late = late_chat.say(OWNER)
    assert "I'm sorry your order is late" in late and "how did I do" not in late
    assert [row[:2] for row in feedback_rows(shop)] == [("shopper-1", "order_help")]


def test_a_created_return_ends_with_the_survey_once(shop):
    chat = Chat()
    chat.say("i want to return something", "start_return")
    chat.say(f"SH-100004 {OWNER}")
    chat.say("the tee")
    chat.say("too small", return_reason="too small")
    done = chat.say("refund", resolution="refund")
    assert "how easy was it to set up your return?" in done
    assert [b["payload"] for b in chat.buttons] == SURVEY_PAYLOADS

    status = chat.say("where is order SH-100001", "order_status", order_number="SH-100001")
    assert "Order SH-100001" in status and "One quick question" not in status
    assert [row[:2] for row in feedback_rows(shop)] == [("shopper-1", "return")]


def test_a_confirmed_payment_asks_for_a_rating(shop_engine):
    with session_scope(shop_engine) as session:
        variants = catalog(session)
        order = make_order(session, "SH-300001", [(variants["tee"], 1)], status="paid")
        order.conversation_id = "shopper-1"
    confirmed = tracker_for("", "payment_confirmed", [entity("order_number", "SH-300001")])
    messages, _ = run(ActionConfirmPayment(), confirmed)
    assert messages[0]["text"].startswith("Payment received: your order SH-300001 is confirmed.")
    assert [b["payload"] for b in messages[1]["buttons"]] == SURVEY_PAYLOADS


def test_the_hand_back_asks_only_its_own_rating_and_counts_as_the_survey(shop_engine):
    with session_scope(shop_engine) as session:
        handoff = request_handoff(session, "shopper-1", "talk_to_human")
        claim(session, handoff.id, "alice")
        resolve(session, handoff.id, "alice")
    messages, _ = run(ActionHandoffResume(), tracker_for("", "talk_to_human"))
    assert len(messages) == 2 and "help you got from alice" in messages[1]["text"]

    later = CollectingDispatcher()
    assert ask_for_feedback_once(later, tracker_for("", "order_status"), "order_help") is False
    assert feedback_rows(shop_engine) == [("shopper-1", "handoff", None, "", False)]


def test_a_high_rating_is_thanked_and_opens_the_comment_form(shop_engine):
    ask_for_feedback_once(CollectingDispatcher(), tracker_for("", "order_status"), "order_help")
    messages, events = rate('/give_feedback{"feedback_rating": "5"}', "5")

    assert messages[0]["text"] == "Thank you for your 5/5!"
    assert slot_events(events) == {"feedback_outcome": "high"}
    assert feedback_rows(shop_engine) == [("shopper-1", "order_help", 5, "", False)]


def test_a_low_rating_offers_a_person(shop_engine):
    messages, events = rate("I'd rate the assistant 2 out of 5", "2")

    assert "I'm sorry it wasn't better" in messages[0]["text"]
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/talk_to_human", "/deny"]
    assert slot_events(events) == {"feedback_outcome": "low"}
    assert feedback_rows(shop_engine) == [("shopper-1", "general", 2, "", False)]


def test_rating_again_changes_the_rating_instead_of_adding_one(shop_engine):
    rate("4 stars for the chat", "4")
    messages, _ = rate("actually make that 3 stars", "3")

    assert messages[0]["text"] == "Thanks, I've changed your rating from 4/5 to 3/5."
    assert feedback_rows(shop_engine) == [("shopper-1", "general", 3, "", False)]


@pytest.mark.parametrize("said, stars, expected", [
    ("the bot was great", None, 5),
    ("10/10 would chat again", "10", 5),  # the entity alone ("10") is no 1-5 rating; the message is
    ("I bought 2 shirts, 4 stars for the chat", "4", 4),  # two numbers in the text: the entity decides
    ("5 stars", None, 5),
])
def test_the_rating_is_read_from_the_message_or_its_entity(shop_engine, said, stars, expected):
    rate(said, stars)
    assert feedback_rows(shop_engine)[0][2] == expected


def test_a_rating_the_agent_entity_carries_still_counts(shop_engine):
    run(ActionRecordFeedback(), tracker_for("four", "give_feedback", [entity("handoff_rating", "4")]))
    assert feedback_rows(shop_engine)[0][2] == 4


def test_an_unreadable_rating_is_asked_again_and_changes_nothing(shop_engine):
    rate("3", "3")
    before = feedback_rows(shop_engine)
    messages, events = rate("not great to be honest")

    assert "from 1 (poor) to 5 (excellent)" in messages[0]["text"]
    assert [b["payload"] for b in messages[0]["buttons"]] == SURVEY_PAYLOADS
    assert slot_events(events) == {"feedback_outcome": "unclear"}
    assert feedback_rows(shop_engine) == before


def test_the_comment_question_can_be_skipped_with_a_button():
    messages, _ = run(ActionAskFeedbackComment(), tracker_for("4", "give_feedback"))
    assert messages[0]["text"] == "Is there anything you'd like to add? Type it here, or tap Skip."
    assert messages[0]["buttons"] == [{"title": "Skip", "payload": "/deny"}]


def validate_comment(text):
    form = ValidateFeedbackForm()
    return asyncio.run(form.validate_feedback_comment(text, CollectingDispatcher(), tracker_for(text, "inform"), {}))


@pytest.mark.parametrize("text", ["skip", "No thanks", "nothing else", "that's all", "  "])
def test_skip_or_no_leaves_the_comment_empty(text):
    assert validate_comment(text) == {"feedback_comment": ""}


def test_a_comment_is_kept_in_the_shoppers_words_up_to_2000_characters():
    assert validate_comment("  the size advice was spot on ") == {"feedback_comment": "the size advice was spot on"}
    assert len(validate_comment("a" * 2500)["feedback_comment"]) == 2000


def test_the_comment_is_saved_with_the_rating_and_the_survey_slots_cleared(shop_engine):
    rate("4", "4")
    messages, events = run(ActionSaveFeedbackComment(),
                           tracker_for("the size advice was spot on", "inform",
                                       slots={"feedback_comment": "the size advice was spot on"}))

    assert messages[0]["text"].startswith("Thank you, I've passed that on to the team.")
    assert slot_events(events) == {"feedback_comment": None, "feedback_outcome": None}
    assert feedback_rows(shop_engine) == [("shopper-1", "general", 4, "the size advice was spot on", False)]


def test_a_skipped_comment_saves_nothing(shop_engine):
    rate("4", "4")
    messages, events = run(ActionSaveFeedbackComment(), tracker_for("/deny", "deny", slots={"feedback_comment": ""}))

    assert messages[0]["text"].startswith("No problem.")
    assert slot_events(events) == {"feedback_comment": None, "feedback_outcome": None}
    assert feedback_rows(shop_engine) == [("shopper-1", "general", 4, "", False)]


def test_a_complaint_during_team_hours_is_recorded_and_queued(shop_engine, team_on_duty):  # noqa: F811
    words = "your delivery was terrible and nobody answers"
    messages, events = run(ActionHandoffRequest(), tracker_for(words, "complaint"))

    assert "getting a person from our team" in messages[0]["text"]
    assert slot_events(events) == {"handoff_reason": "complaint", "handoff_status": "waiting"}
    assert feedback_rows(shop_engine) == [("shopper-1", "general", None, words, True)]


def test_a_complaint_out_of_hours_is_recorded_and_becomes_a_ticket(shop_engine, team_off_duty):  # noqa: F811
    words = "the parcel came two weeks late and my emails were never answered"
    _, events = run(ActionHandoffRequest(), tracker_for(words, "complaint"))
    assert slot_events(events)["handoff_status"] == "unavailable"

    messages, _ = run(ActionHandoffCreateTicket(), tracker_for(words, "complaint", slots={
        "handoff_email": "jo@example.com", "handoff_summary": words, "handoff_reason": "complaint"}))

    assert "ticket HT-000001" in messages[0]["text"]
    assert feedback_rows(shop_engine) == [("shopper-1", "general", None, words, True)]
    with session_scope(shop_engine) as session:
        ticket = session.scalars(select(HandoffTicket)).one()
        assert (ticket.reason, ticket.contact, ticket.conversation_id) == ("complaint", "jo@example.com", "shopper-1")


def test_a_complaint_from_a_button_records_no_payload_as_words(shop_engine, team_on_duty):  # noqa: F811
    run(ActionHandoffRequest(), tracker_for('/talk_to_human{"handoff_reason": "complaint"}', "talk_to_human",
                                            [entity("handoff_reason", "complaint")]))
    assert feedback_rows(shop_engine) == [("shopper-1", "general", None, "", True)]


def test_asking_for_a_person_is_no_complaint(shop_engine, team_on_duty):  # noqa: F811
    run(ActionHandoffRequest(), tracker_for("can I talk to a real person", "talk_to_human"))
    assert feedback_rows(shop_engine) == []
