"""The newsletter in the chat: consent asked explicitly and recorded; unsubscribe honoured at once."""
import asyncio
from pathlib import Path

import pytest
import yaml
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.newsletter import (
    ActionAskNewsletterConsent,
    ActionNewsletterSubscribe,
    ActionNewsletterUnsubscribe,
    ValidateNewsletterForm,
    ValidateNewsletterUnsubscribeForm,
)
from shop.db import session_scope
from shop.newsletter import NewsletterConsent, NewsletterSubscriber
from tests.actions.trackers import tracker_for

DOMAIN = yaml.safe_load((Path(__file__).resolve().parents[2] / "domain.yml").read_text())
WORDING = "Yes, send me the Northwind Outfitters newsletter by email. I can unsubscribe at any time."


def run(action, tracker):
    dispatcher = CollectingDispatcher()
    asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages


def subscribers(engine):
    with session_scope(engine) as session:
        return [(s.email, s.status, s.consent_source) for s in session.execute(select(NewsletterSubscriber)).scalars()]


def consent_log(engine):
    with session_scope(engine) as session:
        return [(c.action, c.source, c.consent_text) for c in session.execute(select(NewsletterConsent)).scalars()]


def test_the_consent_question_shows_the_wording_and_asks_yes_or_no(shop_engine):
    message = run(ActionAskNewsletterConsent(), tracker_for("", "newsletter_subscribe",
                                                             slots={"newsletter_email": "sam@example.com"}))[0]
    assert message["text"] == f'May I send our newsletter to sam@example.com? "{WORDING}" Please answer yes or no.'
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny"]


def test_yes_subscribes_and_records_time_source_and_wording(shop_engine):
    messages = run(ActionNewsletterSubscribe(), tracker_for("yes", "affirm", slots={
        "newsletter_email": "sam@example.com", "newsletter_consent": True}))
    assert messages[0]["text"].startswith("Thanks! sam@example.com is subscribed to our newsletter.")
    assert subscribers(shop_engine) == [("sam@example.com", "subscribed", "chat")]
    assert consent_log(shop_engine) == [("subscribe", "chat", WORDING)]


def test_no_records_nothing(shop_engine):
    messages = run(ActionNewsletterSubscribe(), tracker_for("no", "deny", slots={
        "newsletter_email": "sam@example.com", "newsletter_consent": False}))
    assert messages[0]["text"].startswith("Alright, I haven't subscribed you.")
    assert subscribers(shop_engine) == [] and consent_log(shop_engine) == []


def test_a_bad_email_is_asked_again(shop_engine):
    dispatcher = CollectingDispatcher()
    result = asyncio.run(ValidateNewsletterForm().validate_newsletter_email(
        "sam at home", dispatcher, tracker_for("sam at home", "inform"), {}))
    assert result == {"newsletter_email": None}
    assert dispatcher.messages[0]["text"].startswith("That doesn't look like an email address.")


def test_the_checkout_email_is_offered_instead_of_asking(shop_engine):
    extracted = asyncio.run(ValidateNewsletterForm().extract_newsletter_email(
        CollectingDispatcher(), tracker_for("subscribe me", "newsletter_subscribe",
                                            slots={"cart_checkout_email": "kim@example.com"}), {}))
    assert extracted == {"newsletter_email": "kim@example.com"}


def test_unsubscribe_is_honoured_and_logged(shop_engine):
    run(ActionNewsletterSubscribe(), tracker_for("yes", "affirm", slots={
        "newsletter_email": "sam@example.com", "newsletter_consent": True}))
    messages = run(ActionNewsletterUnsubscribe(), tracker_for("unsubscribe me", "newsletter_unsubscribe",
                                                              slots={"newsletter_email": "sam@example.com"}))
    assert messages[0]["text"] == "You're unsubscribed: you won't get our newsletter."
    assert subscribers(shop_engine) == [("sam@example.com", "unsubscribed", "chat")]
    assert [action for action, _, _ in consent_log(shop_engine)] == ["subscribe", "unsubscribe"]


def test_unsubscribing_an_unknown_address_reveals_nothing(shop_engine):
    messages = run(ActionNewsletterUnsubscribe(), tracker_for("unsubscribe", "newsletter_unsubscribe",
                                                              slots={"newsletter_email": "nobody@example.com"}))
    assert messages[0]["text"] == "You're unsubscribed: you won't get our newsletter."
    assert subscribers(shop_engine) == []


@pytest.mark.parametrize("action, form", [(ValidateNewsletterForm(), "newsletter_form"),
                                          (ValidateNewsletterUnsubscribeForm(), "newsletter_unsubscribe_form")])
def test_the_forms_validation_runs_as_the_action_server_runs_it(shop_engine, action, form):
    # Regression: a form_name attribute shadowed rasa_sdk's form_name() and every live run failed.
    tracker = tracker_for("sam@example.com", "inform", slots={"requested_slot": "newsletter_email",
                                                              "newsletter_email": "Sam@Example.com"},
                          active_loop={"name": form})
    tracker.events.append({"event": "slot", "name": "newsletter_email", "value": "Sam@Example.com"})  # as extracted
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, DOMAIN))
    assert action.form_name() == form
    assert {"event": "slot", "name": "newsletter_email", "value": "sam@example.com", "timestamp": None} in events
