"""Handing chats to a person: the actions with real trackers and a real shop database."""
import asyncio
from datetime import datetime, timezone

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.fallback import ActionDefaultFallback
from actions.handoff import (
    ActionHandoffCreateTicket,
    ActionHandoffNoAgent,
    ActionHandoffPaymentProblem,
    ActionHandoffRate,
    ActionHandoffRequest,
    ActionHandoffResume,
    ValidateHandoffTicketForm,
)
from shop.db import session_scope
from shop.handoff import DAY_NAMES, HandoffRequest, claim, request_handoff, resolve
from shop.models import Feedback, HandoffTicket
from tests.actions.test_leads import HOT_SLOTS as HOT_LEAD_SLOTS
from tests.actions.test_leads import WARM_SLOTS as WARM_LEAD_SLOTS
from tests.actions.test_leads import submit as submit_lead
from tests.actions.trackers import entity, run, slot_events, tracker_for

ALWAYS_OPEN = {"SHOP_SUPPORT_HOURS": "00:00-24:00", "SHOP_SUPPORT_DAYS": "mon-sun", "SHOP_HANDOFF_WAIT_SECONDS": "120"}


def handoffs(engine):
    with session_scope(engine) as session:
        return [(h.conversation_id, h.reason, h.status) for h in session.scalars(select(HandoffRequest))]


@pytest.fixture
def team_on_duty(monkeypatch):
    for name, value in ALWAYS_OPEN.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def team_off_duty(monkeypatch):
    """Support only on the weekday after tomorrow, so the team is off duty whenever the test runs."""
    off_day = DAY_NAMES[(datetime.now(timezone.utc).weekday() + 2) % 7]
    monkeypatch.setenv("SHOP_SUPPORT_HOURS", "09:00-10:00")
    monkeypatch.setenv("SHOP_SUPPORT_DAYS", off_day)
    monkeypatch.setenv("SHOP_SUPPORT_TIMEZONE", "UTC")
    return off_day.capitalize()


def test_asking_for_a_person_while_the_team_is_on_duty_queues_the_chat(shop_engine, team_on_duty):
    tracker = tracker_for("can I talk to a real person", "talk_to_human", slots={"category": "sneakers"})
    messages, events = run(ActionHandoffRequest(), tracker)

    assert "getting a person from our team" in messages[0]["text"]
    assert "within 2 minutes" in messages[0]["text"]
    assert slot_events(events) == {"handoff_reason": "talk_to_human", "handoff_status": "waiting"}
    assert handoffs(shop_engine) == [("shopper-1", "talk_to_human", "waiting")]
    with session_scope(shop_engine) as session:
        assert session.scalar(select(HandoffRequest.context)) == {"category": "sneakers"}

    again, _ = run(ActionHandoffRequest(), tracker)
    assert "already in the queue" in again[0]["text"]
    assert len(handoffs(shop_engine)) == 1


def test_a_complaint_outside_hours_is_recorded_and_the_bot_offers_to_take_a_message(shop_engine, team_off_duty):
    messages, events = run(ActionHandoffRequest(), tracker_for("worst service ever", "complaint"))

    text = messages[0]["text"]
    assert "nobody from our team is available right now" in text
    assert f"{team_off_duty} 09:00-10:00 (UTC)" in text and "next available" in text
    assert slot_events(events) == {"handoff_reason": "complaint", "handoff_status": "unavailable"}
    assert handoffs(shop_engine) == [("shopper-1", "complaint", "unanswered")]


def test_the_payment_topic_can_hand_a_chat_over_with_its_own_reason(shop_engine, team_on_duty):
    _, events = run(ActionHandoffPaymentProblem(), tracker_for("my card was declined twice", "inform"))
    assert slot_events(events)["handoff_reason"] == "payment_problem"
    assert handoffs(shop_engine) == [("shopper-1", "payment_problem", "waiting")]


def test_a_frustrated_message_flagged_by_the_chat_channel_is_queued_with_the_reason_frustration(
        shop_engine, team_on_duty):
    # What channels/webchat.py hands Rasa for "this is useless!!!": talk_to_human with the reason as an entity.
    tracker = tracker_for("this is useless!!!", "talk_to_human", [entity("handoff_reason", "frustration")])
    messages, events = run(ActionHandoffRequest(), tracker)

    assert messages[0]["text"] == "I'm sorry this has been so frustrating."
    assert "getting a person from our team" in messages[1]["text"]
    assert slot_events(events) == {"handoff_reason": "frustration", "handoff_status": "waiting"}
    assert handoffs(shop_engine) == [("shopper-1", "frustration", "waiting")]


def test_a_frustrated_shopper_outside_hours_leaves_a_message_kept_with_the_reason_frustration(
        shop_engine, team_off_duty):
    tracker = tracker_for("wtf, nothing works", "talk_to_human", [entity("handoff_reason", "frustration")])
    messages, events = run(ActionHandoffRequest(), tracker)

    assert "nobody from our team is available right now" in messages[1]["text"]
    assert slot_events(events) == {"handoff_reason": "frustration", "handoff_status": "unavailable"}
    assert handoffs(shop_engine) == [("shopper-1", "frustration", "unanswered")]


def test_a_hot_lead_taking_the_offer_of_a_person_is_queued_as_a_hot_lead(shop_engine, team_on_duty):
    offer = submit_lead(HOT_LEAD_SLOTS)[0][1]
    payload = next(b["payload"] for b in offer["buttons"] if b["title"] == "Talk to a person now")
    messages, events = run(ActionHandoffRequest(), tracker_for(payload, payload.lstrip("/")))

    assert "getting a person from our team" in messages[0]["text"]
    assert slot_events(events)["handoff_reason"] == "hot_lead"
    assert handoffs(shop_engine) == [("shopper-1", "hot_lead", "waiting")]


def test_a_warm_lead_asking_for_a_person_is_an_ordinary_request(shop_engine, team_on_duty):
    submit_lead(WARM_LEAD_SLOTS)
    run(ActionHandoffRequest(), tracker_for("can I talk to someone", "talk_to_human"))
    assert handoffs(shop_engine) == [("shopper-1", "talk_to_human", "waiting")]


def misunderstood_tracker(texts_and_intents):
    events = [{"event": "action", "name": "action_listen"}]
    for text, intent in texts_and_intents:
        events += [
            {"event": "user", "text": text, "parse_data": {"intent": {"name": intent}, "entities": []}},
            {"event": "action", "name": "action_two_stage_fallback"},
        ]
    last_text, last_intent = texts_and_intents[-1]
    return Tracker("shopper-1", {}, {"text": last_text, "intent": {"name": last_intent}, "entities": []},
                   events, False, None, {}, "action_listen")


def test_two_misunderstood_messages_in_a_row_bring_in_a_person(shop_engine, team_on_duty):
    tracker = misunderstood_tracker([("blorp the flux", "nlu_fallback"), ("/out_of_scope", "out_of_scope"),
                                     ("zzkt wobble", "nlu_fallback")])
    messages, events = run(ActionDefaultFallback(), tracker)

    assert messages[0]["text"] == "I'm sorry I keep misunderstanding you."
    assert "getting a person from our team" in messages[1]["text"]
    assert events[-1]["event"] == "rewind"
    assert handoffs(shop_engine) == [("shopper-1", "repeated_fallback", "waiting")]


def test_one_misunderstood_message_only_gets_an_example(shop_engine, team_on_duty):
    tracker = misunderstood_tracker([("show me sneakers", "search_product"), ("blorp", "nlu_fallback")])
    messages, _ = run(ActionDefaultFallback(), tracker)
    assert "Try something like" in messages[0]["text"]
    assert handoffs(shop_engine) == []


def test_repeated_misunderstanding_outside_hours_offers_to_leave_a_message(shop_engine, team_off_duty):
    tracker = misunderstood_tracker([("blorp", "nlu_fallback"), ("zzkt", "nlu_fallback")])
    messages, _ = run(ActionDefaultFallback(), tracker)
    assert messages[0]["buttons"] == [
        {"title": "Leave a message", "payload": '/talk_to_human{"handoff_reason": "repeated_fallback"}'}]
    assert handoffs(shop_engine) == []


def test_nobody_claimed_in_time_so_the_bot_says_so_and_asks_for_an_email(shop_engine, team_on_duty):
    messages, events = run(ActionHandoffNoAgent(), tracker_for("hello?", "greet"))

    assert "nobody could join in time" in messages[0]["text"]
    assert messages[1]["text"] == "What email address should our team reply to?"
    assert {"event": "active_loop", "name": "handoff_ticket_form"} in [
        {k: e[k] for k in ("event", "name")} for e in events if e["event"] == "active_loop"]
    assert slot_events(events)["requested_slot"] == "handoff_email"


def validate(slot, value):
    tracker = tracker_for(value, "inform", slots={"requested_slot": slot, slot: value},
                          active_loop={"name": "handoff_ticket_form"})
    dispatcher = CollectingDispatcher()
    result = asyncio.run(getattr(ValidateHandoffTicketForm(), f"validate_{slot}")(value, dispatcher, tracker, {}))
    return result, [m["text"] for m in dispatcher.messages]


def test_the_ticket_form_takes_the_email_out_of_a_sentence():
    assert validate("handoff_email", "it's Sam.Lee@Example.com thanks") == ({"handoff_email": "sam.lee@example.com"}, [])


def test_the_ticket_form_refuses_what_is_not_an_email():
    result, said = validate("handoff_email", "my phone is 555 1234")
    assert result == {"handoff_email": None}
    assert "doesn't look like an email address" in said[0]


def test_the_ticket_gets_a_number_the_shopper_is_told(shop_engine):
    tracker = tracker_for("I was charged twice", "complaint", slots={
        "handoff_email": "sam@example.com", "handoff_summary": "I was charged twice", "handoff_reason": "complaint"})
    messages, events = run(ActionHandoffCreateTicket(), tracker)

    assert "ticket HT-000001" in messages[0]["text"] and "sam@example.com" in messages[0]["text"]
    assert slot_events(events) == {"handoff_email": None, "handoff_summary": None, "handoff_status": None}
    with session_scope(shop_engine) as session:
        ticket = session.scalars(select(HandoffTicket)).one()
        assert (ticket.number, ticket.contact, ticket.summary, ticket.reason) == (
            "HT-000001", "sam@example.com", "I was charged twice", "complaint")


def test_after_the_hand_back_the_bot_asks_to_rate_the_agent_and_records_it(shop_engine):
    with session_scope(shop_engine) as session:
        handoff = request_handoff(session, "shopper-1", "talk_to_human")
        claim(session, handoff.id, "alice")
        resolve(session, handoff.id, "alice")

    messages, _ = run(ActionHandoffResume(), tracker_for("", "talk_to_human"))
    assert messages[0]["text"] == "I'm back. Anything else I can help with?"
    assert "help you got from alice" in messages[1]["text"]
    assert [b["payload"] for b in messages[1]["buttons"]][-1] == '/rate_help{"handoff_rating": "5"}'

    thanks, _ = run(ActionHandoffRate(), tracker_for('/rate_help{"handoff_rating": "5"}', "rate_help",
                                                     [entity("handoff_rating", "5")]))
    assert thanks[0]["text"] == "Thank you! I've passed your 5/5 on to alice."
    with session_scope(shop_engine) as session:
        assert session.scalar(select(HandoffRequest.rating)) == 5


def test_a_rating_with_no_agent_to_rate_rates_the_chat_instead(shop_engine):
    messages, events = run(ActionHandoffRate(), tracker_for("5 stars", "rate_help", [entity("handoff_rating", "5")]))
    assert messages[0]["text"] == "Thank you for your 5/5!"
    assert events == [] and handoffs(shop_engine) == []
    with session_scope(shop_engine) as session:
        assert [(f.rating, f.topic) for f in session.execute(select(Feedback)).scalars()] == [(5, "general")]
