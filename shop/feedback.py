"""Shoppers' feedback on the chat: the 1-5 survey after a finished flow, remarks, complaints.

A conversation (one Rasa session of one chat) has at most one survey row in `feedback`: it is
written when the survey is asked (rating still empty, so the team can see how many answer), and
the shopper's rating and comment fill it in; rating again changes it instead of adding a row.
Feedback the shopper gives before being asked starts that row itself (topic `general`), so they are
not asked again in the same conversation. Each complaint is a row of its own (`is_complaint`);
the ticket for the team's reply comes from the handoff flow's ticket form (shop.handoff.create_ticket,
reason `complaint`).

`conversation_started` is when the Rasa session began (None: the chat's whole history), which is
what "once per conversation" means here. Nothing here knows about Rasa.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import List, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.carts import utc_naive
from shop.models import Feedback

# The flows that end with the survey, plus feedback nobody asked for.
TOPICS = ("order_help", "return", "purchase", "handoff", "general")
COMMENT_MAX = 2000
LOW_RATING_MAX = 2  # 1-2 stars: the shopper is offered a person from the team

_STAR_SIGNS = re.compile(r"[★⭐]")
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# A number word counts only as the whole answer or before "star(s)" / "out of": "this one" is no rating.
_WORD_RATING = re.compile(r"^\s*(one|two|three|four|five)\s*(?:stars?|/\s*5|out of (?:5|five))?\s*[.!]*\s*$|"
                          r"\b(one|two|three|four|five)\s+(?:stars?|out of)\b", re.IGNORECASE)
_SENTIMENT = {
    1: ("terrible", "awful", "horrible", "useless", "worst", "appalling", "dreadful", "rubbish", "abysmal"),
    2: ("bad", "poor", "disappointing", "unhelpful", "mediocre"),
    3: ("ok", "okay", "average", "alright", "fine", "so-so", "decent"),
    4: ("good", "helpful", "nice", "pleasant", "quick", "easy"),
    5: ("great", "excellent", "amazing", "perfect", "fantastic", "brilliant", "awesome", "superb",
        "outstanding", "wonderful", "best", "flawless", "love", "loved"),
}
_NEGATION = re.compile(r"\b(not|never|no|hardly|isn'?t|wasn'?t|aren'?t|weren'?t|didn'?t|don'?t)\s+(?:\w+\s+)?$",
                       re.IGNORECASE)


class FeedbackError(ValueError):
    """Feedback that cannot be recorded; `message` is fit to show to the shopper."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RatingRecorded:
    rating: int
    previous_rating: Optional[int]  # set when the shopper changed an earlier rating
    topic: str

    @property
    def is_low(self) -> bool:
        return self.rating <= LOW_RATING_MAX


def _star_count(text: str) -> Optional[int]:
    stars = len(_STAR_SIGNS.findall(text))
    if not stars:
        stripped = text.strip()
        # "***" typed on its own; a lone asterisk in a sentence is punctuation, not a rating.
        stars = len(stripped) if stripped and set(stripped) == {"*"} else 0
    return stars or None


def _in_range(value: float) -> Optional[int]:
    stars = int(value + 0.5)  # 4.5 stars rounds up, like most shops show them
    return stars if 1 <= stars <= 5 and value > 0 else None


def _number_rating(text: str) -> Optional[int]:
    fraction = _FRACTION.search(text)
    if fraction:
        given, scale = float(fraction.group(1)), float(fraction.group(2))
        if scale <= 0 or given > scale:
            return None
        return _in_range(given * 5 / scale) if given else None
    numbers = {float(n) for n in _NUMBER.findall(text)}
    if len(numbers) == 1:
        return _in_range(numbers.pop())
    return None


def _sentiment_rating(text: str) -> Optional[int]:
    lowered = text.lower()
    levels = set()
    for stars, words in _SENTIMENT.items():
        for word in words:
            for found in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", lowered):
                if _NEGATION.search(lowered[:found.start()]):
                    return None  # "not great" is not a 5, and guessing what it is would be worse
                levels.add(stars)
    if not levels or max(levels) - min(levels) > 1:
        return None  # no opinion word, or "great but terrible": ask instead of guessing
    return max(levels)


def parse_feedback_rating(value: object) -> Optional[int]:
    """1-5 from "5", "4 stars", "4/5", "8 out of 10", "five", "★★★" or "terrible"; None when unclear.

    Digits win over words ("2 stars, great bot" is a 2). Two different numbers, a negated opinion
    word or opinions far apart are unclear, so the shopper is asked again rather than misread.
    """
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    stars = _star_count(text)
    if stars is not None:
        return stars if stars <= 5 else None
    if _NUMBER.search(text):
        return _number_rating(text)
    worded = _WORD_RATING.search(text)
    if worded:
        return _NUMBER_WORDS[(worded.group(1) or worded.group(2)).lower()]
    return _sentiment_rating(text)


def _since(conversation_started: Optional[datetime]) -> Optional[datetime]:
    return utc_naive(conversation_started) if conversation_started is not None else None


def conversation_feedback(session: Session, conversation_id: str,
                          conversation_started: Optional[datetime] = None) -> Optional[Feedback]:
    """The survey row of this conversation (asked, or feedback given unprompted); complaints are not it."""
    query = select(Feedback).where(Feedback.conversation_id == conversation_id, Feedback.is_complaint.is_(False))
    since = _since(conversation_started)
    if since is not None:
        query = query.where(Feedback.created_at >= since)
    return session.execute(query.order_by(Feedback.id.desc()).limit(1)).scalars().first()


def was_feedback_asked(session: Session, conversation_id: str,
                       conversation_started: Optional[datetime] = None) -> bool:
    return conversation_feedback(session, conversation_id, conversation_started) is not None


def _check_topic(topic: str) -> str:
    if topic not in TOPICS:
        raise FeedbackError("bad_topic", f"unknown feedback topic {topic!r} (one of {', '.join(TOPICS)})")
    return topic


def start_survey(session: Session, conversation_id: str, topic: str,
                 conversation_started: Optional[datetime] = None, now: Optional[datetime] = None) -> bool:
    """True when the survey should be asked now (its row is written); False when this conversation
    already had it or gave feedback unprompted."""
    _check_topic(topic)
    if was_feedback_asked(session, conversation_id, conversation_started):
        return False
    session.add(Feedback(conversation_id=conversation_id, topic=topic, comment="", is_complaint=False,
                         created_at=utc_naive(now)))
    session.flush()
    return True


def record_feedback_rating(session: Session, conversation_id: str, rating: object,
                           conversation_started: Optional[datetime] = None,
                           now: Optional[datetime] = None) -> RatingRecorded:
    """Rates this conversation (the survey's row, or a new `general` one); rating again changes it."""
    stars = parse_feedback_rating(rating)
    if stars is None:
        raise FeedbackError("bad_rating", "Please rate with a number from 1 (poor) to 5 (excellent).")
    feedback = conversation_feedback(session, conversation_id, conversation_started)
    if feedback is None:
        feedback = Feedback(conversation_id=conversation_id, topic="general", comment="", is_complaint=False,
                            created_at=utc_naive(now))
        session.add(feedback)
    previous = feedback.rating
    feedback.rating = stars
    session.flush()
    return RatingRecorded(rating=stars, previous_rating=previous, topic=feedback.topic)


def record_feedback_comment(session: Session, conversation_id: str, comment: str,
                            conversation_started: Optional[datetime] = None,
                            now: Optional[datetime] = None) -> Feedback:
    """Adds the shopper's words to this conversation's feedback (a later comment replaces it)."""
    text = (comment or "").strip()
    if not text:
        raise FeedbackError("empty_comment", "There is no comment to save.")
    feedback = conversation_feedback(session, conversation_id, conversation_started)
    if feedback is None:
        feedback = Feedback(conversation_id=conversation_id, topic="general", is_complaint=False,
                            created_at=utc_naive(now))
        session.add(feedback)
    feedback.comment = text[:COMMENT_MAX]
    session.flush()
    return feedback


def record_complaint(session: Session, conversation_id: str, words: str,
                     now: Optional[datetime] = None) -> Feedback:
    """One row per complaint, with the shopper's words (empty when it came from a button)."""
    complaint = Feedback(conversation_id=conversation_id, topic="general", is_complaint=True,
                         comment=(words or "").strip()[:COMMENT_MAX], created_at=utc_naive(now))
    session.add(complaint)
    session.flush()
    return complaint


def complaints(session: Session, conversation_id: Optional[str] = None, limit: int = 100) -> List[Feedback]:
    """The newest complaints (of one conversation, when given), for the team and the tests."""
    query = select(Feedback).where(Feedback.is_complaint.is_(True))
    if conversation_id is not None:
        query = query.where(Feedback.conversation_id == conversation_id)
    return list(session.execute(query.order_by(Feedback.id.desc()).limit(limit)).scalars())
