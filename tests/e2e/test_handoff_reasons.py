"""Why a live chat goes to a person, recorded with the request: strong frustration and a hot lead.

Real Rasa with the trained model, the action server and the shop database of the shared stack; the
shopper talks over socket.io like the web chat widget.
"""
import requests

from shop.db import session_scope
from shop.handoff import HandoffRequest
from shop.leads import LeadAnswers, store_lead
from tests.e2e.chat import ask, reply_text
from tests.e2e.test_socketio import WebChatClient


def handoff_of(stack, conversation_id):
    with session_scope(stack.engine()) as session:
        return [(h.reason, h.status) for h in session.query(HandoffRequest).filter_by(conversation_id=conversation_id)]


def test_a_frustrated_shopper_is_handed_to_a_person_and_the_reason_is_frustration(stack):
    chat = WebChatClient(stack.rasa_url, "frustrated-shopper")
    try:
        ask(chat, "hi", "welcome to")
        assert handoff_of(stack, "frustrated-shopper") == []
        chat.say("this is useless, nothing works!!!")
        assert reply_text(chat, "frustrating") == "I'm sorry this has been so frustrating."
        assert "getting a person from our team" in reply_text(chat, "person")
    finally:
        chat.close()

    assert handoff_of(stack, "frustrated-shopper") == [("frustration", "waiting")]
    events = requests.get(f"{stack.rasa_url}/conversations/frustrated-shopper/tracker", timeout=10).json()["events"]
    said = [e for e in events if e["event"] == "user"][-1]
    # The tracker keeps the shopper's own words; Rasa took them as a request for a person.
    assert (said["text"], said["parse_data"]["intent"]["name"]) == ("this is useless, nothing works!!!",
                                                                  "talk_to_human")


def test_a_hot_lead_asking_for_a_person_is_queued_as_a_hot_lead(stack):
    with session_scope(stack.engine()) as session:
        lead = store_lead(session, "hot-lead-shopper", LeadAnswers(
            email="dana@harbor.example", company="Harbor Logistics", role="Head of Operations", quantity=200,
            budget_cents=1_500_000, timeline="within 3 weeks", need="200 embroidered fleece jackets for our staff"),
            consent=True, consent_text="OK to contact me")
        assert lead.stage == "hot"
    chat = WebChatClient(stack.rasa_url, "hot-lead-shopper")
    try:
        chat.say("/talk_to_human")  # the lead's "Talk to a person now" button
        assert "getting a person from our team" in reply_text(chat, "person")
    finally:
        chat.close()
    assert handoff_of(stack, "hot-lead-shopper") == [("hot_lead", "waiting")]
