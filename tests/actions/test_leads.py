"""Lead capture in the chat: the qualification form and the submit action, with real trackers and a real database."""
import asyncio
from pathlib import Path

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.leads import (
    ActionAskLeadBudget,
    ActionAskLeadConsent,
    ActionAskLeadNeed,
    ActionLeadCallback,
    ActionSubmitLead,
    ValidateLeadCallbackForm,
    ValidateLeadForm,
)
from shop.db import session_scope
from shop.models import Lead

REPO = Path(__file__).resolve().parents[2]
# The form's slots and questions come from the domain, as Rasa reads them.
DOMAIN = yaml.safe_load((REPO / "domain.yml").read_text())
FORM_SLOTS = DOMAIN["forms"]["lead_form"]["required_slots"]

HOT_SLOTS = {"lead_need": "200 embroidered fleece jackets for our warehouse staff", "lead_quantity": "200",
             "lead_company": "Harbor Logistics", "lead_role": "Head of Operations", "lead_budget": "1500000",
             "lead_timeline": "within 3 weeks", "lead_email": "dana@harbor.example", "lead_consent": True}
WARM_SLOTS = {**HOT_SLOTS, "lead_role": "office manager", "lead_quantity": "30", "lead_budget": "300000",
              "lead_timeline": "next month", "lead_company": "Brightside Dental"}
COLD_SLOTS = {**HOT_SLOTS, "lead_need": "t-shirts", "lead_quantity": "12", "lead_company": "skipped",
              "lead_role": "skipped", "lead_budget": "skipped", "lead_timeline": "skipped"}


def tracker(text, intent, slots=None, extracted=None, form=None):
    """A tracker as Rasa sends it: the message, then the slot values the form extracted from it."""
    parse = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": []}
    events = [{"event": "action", "name": "action_listen"},
              {"event": "user", "text": text, "parse_data": parse, "input_channel": "rest"}]
    events += [{"event": "slot", "name": name, "value": value} for name, value in (extracted or {}).items()]
    return Tracker("shopper-1", {**(slots or {}), **(extracted or {})}, parse, events, False, None,
                   {"name": form} if form else {}, "action_listen")


def run(action, tracker_):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker_, DOMAIN))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def answer(slot, text, intent="inform", slots=None):
    """The shopper answers the question for `slot`; what the form keeps and what it says."""
    before = {**(slots or {}), "requested_slot": slot}
    messages, events = run(ValidateLeadForm(), tracker(text, intent, before, {slot: text}, form="lead_form"))
    return events, [m["text"] for m in messages]


def leads(engine):
    with session_scope(engine) as session:
        return session.execute(select(Lead)).scalars().all()


# ----------------------------------------------------------------------------- the questions


def test_a_quantity_is_kept_as_a_number_and_words_without_one_are_asked_again():
    assert answer("lead_quantity", "about 50 people")[0]["lead_quantity"] == "50"
    events, said = answer("lead_quantity", "lots")
    assert events["lead_quantity"] is None and events.get("requested_slot", "lead_quantity") == "lead_quantity"
    assert said == ["Roughly how many units or people is it for? A number is enough, like 50, or say \"skip\" if "
                    "you don't know yet."]


def test_a_budget_like_lots_gets_a_clear_prompt_and_amounts_become_cents():
    events, said = answer("lead_budget", "lots")
    assert events["lead_budget"] is None
    assert "like $5,000 or 5k" in said[0]
    assert answer("lead_budget", "$5k")[0]["lead_budget"] == "500000"
    assert answer("lead_budget", "5000 dollars")[0]["lead_budget"] == "500000"
    # a per-person amount counts for the whole team already given
    assert answer("lead_budget", "$20 each", slots={"lead_quantity": "50"})[0]["lead_budget"] == "100000"


def test_an_invalid_email_is_asked_again_and_a_valid_one_is_taken_from_a_sentence():
    events, said = answer("lead_email", "dana at harbor dot com")
    assert events["lead_email"] is None
    assert said == ["That doesn't look like an email address. Please type it like name@company.com."]
    assert answer("lead_email", "sure, it's Dana@Harbor.example")[0]["lead_email"] == "dana@harbor.example"


@pytest.mark.parametrize("slot", ["lead_quantity", "lead_company", "lead_role", "lead_budget", "lead_timeline"])
@pytest.mark.parametrize("text, intent", [("skip", "no_preference"), ("don't know", "inform"), ("no", "deny"),
                                          ("I'd rather not say", "deny")])
def test_optional_questions_can_be_skipped(slot, text, intent):
    events, said = answer(slot, text, intent)
    assert events[slot] == "skipped" and said == []


def test_the_need_cannot_be_skipped():
    events, said = answer("lead_need", "skip", "no_preference")
    assert events["lead_need"] is None and said[0].startswith("Just a few words about what you'd like")


def test_free_answers_are_kept_as_typed():
    assert answer("lead_company", "  Harbor   Logistics ")[0]["lead_company"] == "Harbor Logistics"
    assert answer("lead_role", "Head of Operations")[0]["lead_role"] == "Head of Operations"
    assert answer("lead_timeline", "by September", "inform")[0]["lead_timeline"] == "by September"


@pytest.mark.parametrize("slot, text, intent", [
    ("lead_company", "stop", "deny"), ("lead_budget", "cancel this", "out_of_scope"),
    ("lead_need", "no", "deny"), ("lead_email", "never mind", "deny"),
])
def test_stop_or_no_to_a_required_question_ends_the_form_and_keeps_nothing(shop_engine, slot, text, intent):
    events, said = answer(slot, text, intent)
    assert events == {slot: None, "lead_outcome": "stopped", "requested_slot": None}
    assert said == ["Alright, I've stopped there and kept none of your answers. Anything else I can help with?"]

    messages, cleared = run(ActionSubmitLead(), tracker(text, intent, {"lead_outcome": "stopped"}))
    assert messages == [] and set(cleared) >= {"lead_outcome", "lead_need", "lead_email"}
    assert leads(shop_engine) == []


def test_asking_for_a_person_mid_form_is_left_to_the_handoff_rules():
    # talk_to_human is no answer (not_intent in the slot mapping), so the form does not stop on "stop"
    messages, events = run(ValidateLeadForm(), tracker("stop, get me a real person", "talk_to_human",
                                                       {"requested_slot": "lead_company"}, form="lead_form"))
    assert "lead_outcome" not in events and messages == []


def test_the_email_given_at_checkout_is_not_asked_again():
    messages, events = run(ValidateLeadForm(), tracker("Harbor Logistics", "inform",
                                                       {"requested_slot": "lead_company",
                                                        "cart_checkout_email": "dana@harbor.example"},
                                                       {"lead_company": "Harbor Logistics"}, form="lead_form"))
    assert events["lead_email"] == "dana@harbor.example"


def test_the_questions_offer_skip_only_where_it_makes_sense(monkeypatch):
    monkeypatch.setenv("SHOP_NAME", "Northwind Outfitters")
    budget, _ = run(ActionAskLeadBudget(), tracker("", "inform"))
    need, _ = run(ActionAskLeadNeed(), tracker("", "inform"))
    consent, _ = run(ActionAskLeadConsent(), tracker("", "inform", {"lead_email": "dana@harbor.example"}))
    assert budget[0]["buttons"] == [{"title": "Skip", "payload": "skip"}]
    assert need[0]["buttons"] == []
    assert ("Northwind Outfitters's sales team may contact me at dana@harbor.example about this enquiry"
            in consent[0]["text"])
    assert [b["payload"] for b in consent[0]["buttons"]] == ["/affirm", "/deny"]


# ----------------------------------------------------------------------------- submitting


def submit(slots):
    messages, events = run(ActionSubmitLead(), tracker("yes", "affirm", slots))
    return messages, events


def test_a_hot_lead_is_stored_told_why_and_offered_a_person_now_or_a_call_back(shop_engine):
    messages, events = submit(HOT_SLOTS)

    text = messages[0]["text"]
    assert text.startswith("Thanks! I've passed your enquiry to our sales team; they'll reply to dana@harbor.example.")
    assert "a strong fit we can act on right away (hot): a budget of $15,000.00; you decide on the purchase " \
           "(Head of Operations); 200 units or people and a clear need; needed within a month (within 3 weeks)." in text
    assert messages[1]["buttons"] == [{"title": "Talk to a person now", "payload": "/talk_to_human"},
                                      {"title": "Call me back", "payload": "/request_callback"}]
    handoff_intent = messages[1]["buttons"][0]["payload"].lstrip("/")
    assert handoff_intent in yaml.safe_load((REPO / "domain.yml").read_text())["intents"]
    assert all(events[name] is None for name in FORM_SLOTS)

    [lead] = leads(shop_engine)
    assert (lead.conversation_id, lead.stage, lead.score, lead.consent, lead.source) == ("shopper-1", "hot", 100,
                                                                                         True, "chat")
    assert "dana@harbor.example" in lead.consent_text
    assert lead.crm_status == "pending"  # the worker sends it; the chat never waits for the CRM


def test_submitting_twice_keeps_one_lead(shop_engine):
    submit(HOT_SLOTS)
    messages, _ = submit(HOT_SLOTS)
    assert messages[0]["text"].startswith("I already have exactly this enquiry from you, so I haven't added it twice")
    changed, _ = submit({**HOT_SLOTS, "lead_timeline": "next month"})
    assert changed[0]["text"].startswith("Thanks, I've updated your enquiry")
    assert len(leads(shop_engine)) == 1


def test_warm_and_cold_leads_get_no_buttons(shop_engine):
    warm, _ = submit(WARM_SLOTS)
    assert len(warm) == 1 and "(warm): a budget of $3,000.00; you have a say in the purchase" in warm[0]["text"]
    messages, _ = run(ActionSubmitLead(), Tracker("shopper-2", COLD_SLOTS, {"text": "yes", "intent": {
        "name": "affirm"}, "entities": []}, [], False, None, {}, "lead_form"))
    assert len(messages) == 1
    assert "an early-stage enquiry; our sales team will send you what they can (cold): no budget given yet; " \
           "not known who decides on the purchase; 12 units or people and the need not described yet; no date yet." \
           in messages[0]["text"]
    assert sorted(lead.stage for lead in leads(shop_engine)) == ["cold", "warm"]


def test_no_consent_stores_nothing(shop_engine):
    messages, events = submit({**HOT_SLOTS, "lead_consent": False})
    assert messages[0]["text"].startswith("Alright, I haven't kept any of your answers.")
    assert events["lead_email"] is None
    assert leads(shop_engine) == []


def test_when_the_database_is_down_the_answers_are_kept_for_the_next_try(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'no-tables.db'}")
    messages, events = submit(HOT_SLOTS)
    assert messages[0]["text"].startswith("Sorry, I can't save your enquiry right now. I've kept your answers")
    assert events == {}


# ----------------------------------------------------------------------------- call-back


def test_a_call_back_asks_for_a_phone_only_when_the_chat_has_a_lead(shop_engine):
    async def required():
        return await ValidateLeadCallbackForm().required_slots(["lead_phone"], CollectingDispatcher(),
                                                               tracker("call me back", "request_callback"), DOMAIN)

    assert asyncio.run(required()) == []
    messages, events = run(ActionLeadCallback(), tracker("call me back", "request_callback"))
    assert "once I know a little about your order" in messages[0]["text"]

    submit(HOT_SLOTS)
    assert asyncio.run(required()) == ["lead_phone"]


def test_a_call_back_number_is_checked_and_kept_on_the_lead(shop_engine):
    submit(HOT_SLOTS)
    dispatcher = CollectingDispatcher()
    bad = asyncio.run(ValidateLeadCallbackForm().validate_lead_phone("call me maybe", dispatcher, None, DOMAIN))
    assert bad == {"lead_phone": None} and "country or area code" in dispatcher.messages[0]["text"]
    good = asyncio.run(ValidateLeadCallbackForm().validate_lead_phone("+1 (503) 555-0142", dispatcher, None, DOMAIN))
    assert good == {"lead_phone": "+1 503 555 0142"}

    messages, events = run(ActionLeadCallback(), tracker("+1 503 555 0142", "inform", good))
    assert messages[0]["text"].startswith("Done: someone from our sales team will call you on +1 503 555 0142")
    assert events == {"lead_phone": None}
    [lead] = leads(shop_engine)
    assert lead.callback_phone == "+1 503 555 0142" and lead.callback_requested_at is not None
    assert (lead.crm_version, lead.crm_status) == (2, "pending")
