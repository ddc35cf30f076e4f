"""Feedback in the live web chat: the survey after an order's status is shown, asked once per conversation,
its rating and comment in the database; a complaint recorded; and `python -m shop report` counting what the
shop database holds today (leads by stage, ratings, complaints, reminders sent, carts recovered)."""
import csv
import io
from datetime import datetime

from sqlalchemy import func, select

from shop.db import session_scope
from shop.models import Feedback, Lead
from shop.reminders import CartReminder
from tests.e2e.chat import ask, buttons, replies_until, reply_with, verify_by_emailed_code, wait_until
from tests.e2e.test_orders import DEMO_EMAIL, demo_order
from tests.e2e.test_socketio import WebChatClient

SENDER = "e2e-feedback-survey"
COMPLAINER = "e2e-feedback-complaint"
SURVEY = "how did I do helping with your order?"


def feedback_rows(engine, conversation_id: str):
    with session_scope(engine) as session:
        return session.execute(select(Feedback.topic, Feedback.rating, Feedback.comment, Feedback.is_complaint)
                               .where(Feedback.conversation_id == conversation_id)
                               .order_by(Feedback.id)).all()


def todays_figures(engine):
    """What the shop database holds for today (UTC), counted directly from its tables."""
    start = datetime.combine(datetime.utcnow().date(), datetime.min.time())
    with session_scope(engine) as session:
        stages = dict(session.execute(select(Lead.stage, func.count()).where(Lead.created_at >= start)
                                      .group_by(Lead.stage)).all())
        ratings = session.execute(select(func.count(Feedback.rating), func.avg(Feedback.rating))
                                  .where(Feedback.created_at >= start, Feedback.rating.is_not(None))).one()
        complaints = session.scalar(select(func.count()).select_from(Feedback)
                                    .where(Feedback.created_at >= start, Feedback.is_complaint.is_(True)))
        reminders = session.scalar(select(func.count()).select_from(CartReminder)
                                   .where(CartReminder.sent_at >= start))
        recovered = session.scalar(select(func.count()).select_from(CartReminder)
                                   .where(CartReminder.status == "recovered", CartReminder.recovered_at >= start))
    return {"leads_cold": stages.get("cold", 0), "leads_warm": stages.get("warm", 0),
            "leads_hot": stages.get("hot", 0), "ratings": ratings[0], "avg_rating": f"{ratings[1]:.2f}",
            "complaints": complaints, "reminders_sent": reminders, "carts_recovered": recovered}


def test_the_survey_after_an_order_status_is_asked_once_and_lands_in_the_report(stack, mailbox):
    engine = stack.engine()
    shipped, delivered = demo_order(stack, "shipped"), demo_order(stack, "delivered")
    chat = WebChatClient(stack.rasa_url, SENDER)
    complainer = WebChatClient(stack.rasa_url, COMPLAINER)
    try:
        verify_by_emailed_code(chat, mailbox, DEMO_EMAIL)
        chat.say(f"where is {shipped.number}")
        shown = replies_until(chat, SURVEY)
        assert any(f"Order {shipped.number}" in (message.get("text") or "") for message in shown)
        survey = shown[-1]
        assert list(buttons(survey)) == ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"]
        assert feedback_rows(engine, SENDER) == [("order_help", None, "", False)]  # asked, not yet answered

        ask(chat, buttons(survey)["4 ★"], "Thank you for your 4/5!")
        reply_with(chat, "anything you'd like to add?")
        ask(chat, "the tracking link was really handy", "I've passed that on to the team")
        assert feedback_rows(engine, SENDER) == [("order_help", 4, "the tracking link was really handy", False)]

        # A second finished flow in the same conversation: the status, and no second survey.
        chat.say(f"where is {delivered.number}")
        reply_with(chat, f"Order {delivered.number}")
        chat.say("what can you do?")
        until_help = replies_until(chat, "I can search our whole catalogue")
        assert not any(SURVEY in (message.get("text") or "") for message in until_help)
        assert len(feedback_rows(engine, SENDER)) == 1

        complainer.say("your delivery was terrible and nobody answers my emails")
        complaint = wait_until(lambda: [row for row in feedback_rows(engine, COMPLAINER) if row.is_complaint],
                               "the complaint stored")
        assert complaint[0].comment == "your delivery was terrible and nobody answers my emails"
    finally:
        chat.close()
        complainer.close()

    report = stack.shop("report", "--days", "1", "--format", "csv")
    [today] = list(csv.DictReader(io.StringIO(report)))
    assert today["day"] == datetime.utcnow().date().isoformat()
    expected = todays_figures(engine)
    assert {name: today[name] for name in expected} == {name: str(value) for name, value in expected.items()}
    assert int(today["ratings"]) >= 1 and int(today["complaints"]) >= 1
    table = stack.shop("report", "--days", "1")
    assert "leads hot" in table and "avg rating" in table and "carts recovered" in table
