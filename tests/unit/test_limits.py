"""What a shopper may send (channels/limits.py): too long or too fast gets a clear reply
on the shopper's channel, and the message goes no further (no NLU, no tracker change)."""
import asyncio

import pytest
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from sanic.exceptions import InvalidUsage

from channels.limits import (
    ConversationRateLimiter, checked_rest_body, enforced, socket_payload_problem, too_fast_reply, too_long_reply,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def send(texts, sender="shopper-1", limiter=None):
    """Sends each text through the limits; (texts Rasa got, replies the shopper got)."""
    handled, channel = [], CollectingOutputChannel()

    async def rasa(message):
        handled.append(message.text)

    handle = enforced(rasa, limiter or ConversationRateLimiter(Clock()))
    for text in texts:
        asyncio.run(handle(UserMessage(text, channel, sender)))
    return handled, [m["text"] for m in channel.messages]


def test_a_message_over_the_limit_is_answered_and_not_handled(monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "2000")
    handled, replies = send(["x" * 10_000, "y" * 2000])
    assert handled == ["y" * 2000]
    assert replies == [too_long_reply(2000)]
    assert "2000 characters" in replies[0]


def test_messages_beyond_the_rate_limit_wait_for_the_minute_to_pass(monkeypatch):
    monkeypatch.setenv("MAX_MESSAGES_PER_MINUTE", "3")
    clock = Clock()
    limiter = ConversationRateLimiter(clock)
    handled, replies = send(["1", "2", "3", "4"], limiter=limiter)
    assert handled == ["1", "2", "3"] and replies == [too_fast_reply()]

    other, _ = send(["hello"], sender="shopper-2", limiter=limiter)  # each conversation has its own count
    assert other == ["hello"]

    clock.now += 60
    handled, replies = send(["5"], limiter=limiter)
    assert handled == ["5"] and replies == []


@pytest.mark.parametrize("body, reason", [
    (None, "JSON object"), ([1, 2], "JSON object"), ("hi", "JSON object"),
    ({"sender": "a"}, '"message"'), ({"sender": "a", "message": 5}, '"message"'),
    ({"sender": ["a"], "message": "hi"}, '"sender"'), ({"message": "hi", "metadata": "x"}, '"metadata"'), ({"sender": True, "message": "hi"}, '"sender"'),
])
def test_rest_bodies_rasa_cannot_read_are_refused_with_the_reason(body, reason):
    with pytest.raises(InvalidUsage, match=reason):
        checked_rest_body(body)


def test_a_well_formed_rest_body_passes():
    checked_rest_body({"sender": "shopper-1", "message": "hi"})
    checked_rest_body({"sender": 17, "message": ""})
    checked_rest_body({"message": "hi"})


@pytest.mark.parametrize("data, reason", [
    (None, "object"), (42, "object"), ("hi", "object"), (["hi"], "object"),
    ({"session_id": "s"}, '"message"'), ({"message": 5}, '"message"'), ({"message": {"text": "hi"}}, '"message"'),
    ({"message": "hi", "session_id": 7}, '"session_id"'), ({"message": "hi", "customData": "{not json"}, '"customData"'),
    ({"message": "hi", "customData": "[1]"}, '"customData"'), ({"message": "hi", "customData": 3}, '"customData"'),
])
def test_socket_payloads_rasa_cannot_read_are_named(data, reason):
    assert reason in socket_payload_problem(data, "customData")


def test_the_widgets_payloads_pass():
    assert socket_payload_problem({"message": "hi", "session_id": "s1"}, "customData") is None
    assert socket_payload_problem({"message": "/greet", "session_id": "s1", "customData": {"page": "home"}},
                                  "customData") is None
    assert socket_payload_problem({"message": "hi", "customData": '{"page": "home"}'}, "customData") is None
