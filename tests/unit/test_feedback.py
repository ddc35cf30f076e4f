"""Feedback ratings, the once-per-conversation survey and complaints (shop/feedback.py)."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from shop.db import session_scope
from shop.feedback import (
    FeedbackError,
    complaints,
    conversation_feedback,
    parse_feedback_rating,
    record_complaint,
    record_feedback_comment,
    record_feedback_rating,
    start_survey,
    was_feedback_asked,
)
from shop.handoff import create_ticket, open_tickets
from shop.models import Feedback

T0 = datetime(2024, 6, 17, 10, 0, 0)


def rows(engine):
    with session_scope(engine) as session:
        return [(f.conversation_id, f.topic, f.rating, f.comment, f.is_complaint)
                for f in session.scalars(select(Feedback).order_by(Feedback.id))]


@pytest.mark.parametrize("said, stars", [
    ("5", 5), ("4 stars", 4), ("five", 5), ("Four out of five", 4), ("one star", 1), ("★★★", 3), ("★★☆☆☆", 2),
    ("***", 3), ("terrible", 1), ("pretty bad", 2), ("it was ok", 3), ("quick and easy", 4),
    ("the bot was great", 5), ("5/5", 5), ("3 out of 5", 3), ("8 out of 10", 4), ("10/10 would chat again", 5),
    ("4.5", 5), ("2 stars, great bot", 2), (" 3 ", 3), ('{"feedback_rating": "4"}', 4),
])
def test_ratings_are_read_from_numbers_stars_and_words(said, stars):
    assert parse_feedback_rating(said) == stars


@pytest.mark.parametrize("said", [
    "", None, "0", "6", "7 stars", "0/5", "6/5", "4 or 5", "not great", "wasn't good", "great but terrible",
    "I want to leave feedback", "this one", "SH-100001", "★★★★★★",
])
def test_what_is_not_clearly_one_to_five_is_no_rating(said):
    assert parse_feedback_rating(said) is None


def test_the_survey_is_asked_once_per_conversation(engine):
    with session_scope(engine) as session:
        assert not was_feedback_asked(session, "chat-1")
        assert start_survey(session, "chat-1", "order_help", now=T0) is True
        assert start_survey(session, "chat-1", "return", now=T0 + timedelta(minutes=5)) is False
        assert start_survey(session, "chat-2", "purchase", now=T0) is True
        assert was_feedback_asked(session, "chat-1")
    assert rows(engine) == [("chat-1", "order_help", None, "", False), ("chat-2", "purchase", None, "", False)]


def test_a_new_conversation_of_the_same_chat_is_asked_again(engine):
    next_day = T0 + timedelta(days=1)
    with session_scope(engine) as session:
        start_survey(session, "chat-1", "order_help", now=T0)
        assert was_feedback_asked(session, "chat-1", conversation_started=T0 - timedelta(minutes=1))
        assert not was_feedback_asked(session, "chat-1", conversation_started=next_day)
        assert start_survey(session, "chat-1", "return", conversation_started=next_day,
                            now=next_day + timedelta(minutes=2)) is True
        record_feedback_rating(session, "chat-1", "5", conversation_started=next_day)
    assert rows(engine) == [("chat-1", "order_help", None, "", False), ("chat-1", "return", 5, "", False)]


def test_rating_fills_the_survey_and_rating_again_changes_it_without_a_second_row(engine):
    with session_scope(engine) as session:
        start_survey(session, "chat-1", "return", now=T0)
        first = record_feedback_rating(session, "chat-1", "4 stars", now=T0)
        second = record_feedback_rating(session, "chat-1", "2", now=T0)
    assert (first.rating, first.previous_rating, first.topic, first.is_low) == (4, None, "return", False)
    assert (second.rating, second.previous_rating, second.is_low) == (2, 4, True)
    assert rows(engine) == [("chat-1", "return", 2, "", False)]


def test_feedback_given_unprompted_counts_as_the_conversations_survey(engine):
    with session_scope(engine) as session:
        recorded = record_feedback_rating(session, "chat-1", "the bot was great", now=T0)
        assert recorded.topic == "general"
        assert start_survey(session, "chat-1", "purchase", now=T0) is False
        record_feedback_comment(session, "chat-1", "  Found my size in a minute.  ", now=T0)
    assert rows(engine) == [("chat-1", "general", 5, "Found my size in a minute.", False)]


def test_bad_ratings_topics_and_empty_comments_change_no_data(engine):
    with session_scope(engine) as session:
        start_survey(session, "chat-1", "order_help", now=T0)
        record_feedback_rating(session, "chat-1", "3", now=T0)
    before = rows(engine)
    with session_scope(engine) as session:
        with pytest.raises(FeedbackError) as bad:
            record_feedback_rating(session, "chat-1", "not great", now=T0)
        assert bad.value.code == "bad_rating" and "1 (poor) to 5 (excellent)" in bad.value.message
        with pytest.raises(FeedbackError):
            record_feedback_rating(session, "chat-new", "maybe", now=T0)
        with pytest.raises(FeedbackError) as topic:
            start_survey(session, "chat-new", "weather", now=T0)
        assert topic.value.code == "bad_topic"
        with pytest.raises(FeedbackError):
            record_feedback_comment(session, "chat-1", "   ", now=T0)
    assert rows(engine) == before


def test_a_complaint_is_its_own_row_and_never_the_survey(engine):
    with session_scope(engine) as session:
        record_complaint(session, "chat-1", "  your delivery was terrible and nobody answers ", now=T0)
        record_complaint(session, "chat-1", "x" * 3000, now=T0)
        assert conversation_feedback(session, "chat-1") is None
        assert start_survey(session, "chat-1", "order_help", now=T0) is True
        found = complaints(session, "chat-1")
        assert [len(c.comment) for c in found] == [2000, len("your delivery was terrible and nobody answers")]
        assert all(c.is_complaint and c.rating is None for c in found)
        assert complaints(session, "chat-2") == []


def test_a_complaint_becomes_a_ticket_through_the_handoff_ticket(engine):
    """The complaint row plus the handoff flow's ticket (reason complaint): what the chat does out of hours."""
    with session_scope(engine) as session:
        record_complaint(session, "chat-1", "the parcel came smashed", now=T0)
        ticket = create_ticket(session, "chat-1", "Jo@Example.com", "the parcel came smashed", "complaint", now=T0)
        assert ticket.number == "HT-000001"
    with session_scope(engine) as session:
        assert [(t.number, t.reason, t.contact, t.conversation_id) for t in open_tickets(session)] == [
            ("HT-000001", "complaint", "jo@example.com", "chat-1")]
        assert session.scalar(select(func.count()).select_from(Feedback).where(Feedback.is_complaint.is_(True))) == 1
