"""Limits on what a shopper can send, checked in the input channels before Rasa parses anything.

- A message longer than MAX_MESSAGE_CHARS (default 2000) gets a clear reply and never reaches NLU,
  so a 10 kB paste costs a string length check, not a model run.
- A conversation may send MAX_MESSAGES_PER_MINUTE messages (default 30) in any 60 seconds; the
  ones beyond get a "slow down" reply and are not handled. The count is kept per Rasa process:
  behind the round-robin balancer each replica counts the messages it receives.

The replies go to the shopper on the channel the message came in (REST answer, socket.io event);
nothing is written to the tracker, so a refused message leaves the conversation as it was.
"""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable, Deque, Optional

from rasa.core.channels.channel import UserMessage

RATE_WINDOW_SECONDS = 60.0
# Conversations whose recent messages are remembered; the least recently active are forgotten first.
REMEMBERED_CONVERSATIONS = 50_000


def max_message_chars() -> int:
    return int(os.environ.get("MAX_MESSAGE_CHARS", "2000"))


def max_messages_per_minute() -> int:
    return int(os.environ.get("MAX_MESSAGES_PER_MINUTE", "30"))


def too_long_reply(limit: int) -> str:
    return (f"Sorry, that message is too long for me: please keep it under {limit} characters "
            "(a sentence or two is plenty).")


def too_fast_reply() -> str:
    return "You're sending messages faster than I can answer. Please wait a moment, then send your message again."


class ConversationRateLimiter:
    """Sliding one-minute window of message times per conversation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._recent: "OrderedDict[str, Deque[float]]" = OrderedDict()

    def allow(self, conversation_id: str, limit: int) -> bool:
        now = self._clock()
        recent = self._recent.pop(conversation_id, None) or deque()
        while recent and now - recent[0] >= RATE_WINDOW_SECONDS:
            recent.popleft()
        allowed = len(recent) < limit
        if allowed:
            recent.append(now)
        self._recent[conversation_id] = recent
        while len(self._recent) > REMEMBERED_CONVERSATIONS:
            self._recent.popitem(last=False)
        return allowed


_limiter = ConversationRateLimiter()


def refusal_for(message: UserMessage, limiter: ConversationRateLimiter = _limiter) -> Optional[str]:
    """The reply that refuses `message`, or None when Rasa may handle it."""
    limit = max_message_chars()
    if message.text and len(message.text) > limit:
        return too_long_reply(limit)
    if not limiter.allow(str(message.sender_id), max_messages_per_minute()):
        return too_fast_reply()
    return None


def enforced(on_new_message: Callable[[UserMessage], Awaitable[Any]],
             limiter: ConversationRateLimiter = _limiter) -> Callable[[UserMessage], Awaitable[Any]]:
    """Wraps a channel's message handler so that refused messages are answered here and go no further."""

    async def handle(message: UserMessage) -> Any:
        refusal = refusal_for(message, limiter)
        if refusal is None:
            return await on_new_message(message)
        await message.output_channel.send_text_message(message.sender_id, refusal)
        return None

    return handle


def rest_body_problem(body: Any) -> Optional[str]:
    """Why Rasa could not read a REST body, or None: not a JSON object, no text `message`, a `sender`
    that is not a string or number, or `metadata` that is not an object."""
    if not isinstance(body, dict):
        return 'The body must be a JSON object such as {"sender": "...", "message": "..."}.'
    if not isinstance(body.get("message"), str):
        return '"message" must be a string.'
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        return '"metadata" must be a JSON object.'
    sender = body.get("sender")
    if sender is not None and (isinstance(sender, bool) or not isinstance(sender, (str, int))):
        return '"sender" must be a string.'
    return None


def checked_rest_body(body: Any) -> None:
    """Raises Sanic's InvalidUsage (HTTP 400, with the reason) for a REST body Rasa could not read."""
    from sanic.exceptions import InvalidUsage

    problem = rest_body_problem(body)
    if problem is not None:
        raise InvalidUsage(problem)


def socket_payload_problem(data: Any, metadata_key: str) -> Optional[str]:
    """Why Rasa's socket.io handler could not read a `user_uttered` payload, or None. Rasa 3.6 calls
    `data.get` and `json.loads` on it unchecked, so a payload that is not an object, a message that is
    not text or metadata that is not a JSON object raised in the handler, logged a traceback and left
    the shopper without an answer."""
    if not isinstance(data, dict):
        return 'The payload must be an object such as {"message": "...", "session_id": "..."}.'
    if not isinstance(data.get("message"), str):
        return '"message" must be a string.'
    session_id = data.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        return '"session_id" must be a string.'
    metadata = data.get(metadata_key)
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return f'"{metadata_key}" must be a JSON object.'
    if metadata is not None and not isinstance(metadata, dict):
        return f'"{metadata_key}" must be a JSON object.'
    return None
