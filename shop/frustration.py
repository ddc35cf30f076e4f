"""Telling strong frustration from a shopper's message, so the chat can bring in a person.

Plain text rules, no Rasa and no model: they run on every shopper message in the chat channel
(channels/webchat.py) before Rasa sees it, and a false alarm costs a shopper a person they did
not ask for, so only clear signs count:

- strong on its own: profanity ("wtf", "this is shit"), an insult or verdict on the help
  ("useless", "stupid bot", "the worst", "waste of time"), or the same message a third time in a row;
- weak, strong only two together: shouting (mostly capitals), piled-up "!!!" or "?!", or the
  same message a second time in a row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Tuple

PROFANITY = ("fuck", "fucking", "fucked", "fck", "shit", "shitty", "bullshit", "wtf", "ffs", "crap", "crappy",
             "damn", "damned", "bloody hell")
VERDICTS = ("useless", "stupid", "idiot", "idiotic", "dumb", "pathetic", "hopeless", "incompetent", "worthless",
            "worst ever", "worst service", "worst bot", "worst chatbot", "worst assistant",
            "worst shop", "worst experience", "ridiculous", "waste of time", "wasting my time", "not helping", "not helpful", "unhelpful",
            "no help at all", "fed up", "sick of this", "this is a joke", "joke of a", "you don't understand",
            "you dont understand", "are you even listening")
STRONG_SIGNALS = ("profanity", "insult", "repeated_three_times")
SHOUTING_MIN_LETTERS = 10
SHOUTING_UPPER_SHARE = 0.8


def _phrases(words: Sequence[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words) + r")\b",
                      re.IGNORECASE)


_PROFANITY = _phrases(PROFANITY)
_VERDICTS = _phrases(VERDICTS)
# "you're the worst", not "the worst rated tent"
_THE_WORST = re.compile(r"\bthe\s+worst\b(?!\s+[a-z])", re.IGNORECASE)
_INTERROBANG = re.compile(r"\?!|!\?")


@dataclass(frozen=True)
class Frustration:
    signals: Tuple[str, ...]  # in the order of the module docstring, e.g. ("shouting", "exclamations")


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _is_shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    words = [w for w in re.findall(r"[^\W\d_]{3,}", text) if w.isupper()]
    return (len(letters) >= SHOUTING_MIN_LETTERS and len(words) >= 2
            and sum(c.isupper() for c in letters) >= SHOUTING_UPPER_SHARE * len(letters))


def _times_in_a_row(text: str, earlier: Sequence[str]) -> int:
    """How many of the latest messages (this one included) say the same thing."""
    said = _normalised(text)
    count = 1
    for previous in reversed(earlier):
        if not said or _normalised(previous) != said:
            break
        count += 1
    return count


def detect_frustration(text: str, earlier: Sequence[str] = ()) -> Frustration | None:
    """Strong frustration in `text` (the shopper's latest message), or None.

    `earlier` are the shopper's previous messages in this conversation, oldest first.
    """
    signals = []
    if _PROFANITY.search(text):
        signals.append("profanity")
    if _VERDICTS.search(text) or _THE_WORST.search(text):
        signals.append("insult")
    repeats = _times_in_a_row(text, earlier)
    if repeats >= 3:
        signals.append("repeated_three_times")
    if _is_shouting(text):
        signals.append("shouting")
    if text.count("!") >= 3 or _INTERROBANG.search(text):
        signals.append("exclamations")
    if repeats == 2:
        signals.append("repeated")
    strong = any(s in STRONG_SIGNALS for s in signals) or len(signals) >= 2
    return Frustration(tuple(signals)) if strong else None
