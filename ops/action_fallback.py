"""What Rasa gets instead of silence when no action server can run a custom action.

Rasa 3.6 treats a refused, failed (5xx) or timed-out action call as "no events" and says nothing, or
waits five minutes for a hung server. The action-server balancer (`ops.balancer --action-fallback`)
answers such calls itself, within its timeout, with this reply in the action server's own format:
an honest sentence and a button to reach a person. Within one shopper turn it is said once, however
many actions fail in a row.

The reply also ends the turn (a follow-up `action_listen`). Without the events the action would have set,
Rasa went on predicting the core fallback, itself a custom action that failed too, until its circuit
breaker tripped; a tripped breaker leaves no `action_listen` behind, so every later message of that
conversation tripped it at once and got no answer, even once the action servers were back.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

DEFAULT_MESSAGE = (
    "Sorry, I can't reach our shop system right now, so I can't look that up or change anything at "
    "the moment. Please try again in a few minutes, or I can put you through to a person from our team."
)
TALK_TO_A_PERSON = {"title": "Talk to a person", "payload": "/talk_to_human"}
# Rasa's FollowupAction event: the next action is listening for the shopper.
END_OF_TURN = {"event": "followup", "name": "action_listen"}


def unavailable_message() -> str:
    return os.environ.get("SHOP_UNAVAILABLE_MESSAGE") or DEFAULT_MESSAGE


def _said_this_turn(events: List[Dict[str, Any]], message: str) -> bool:
    for event in reversed(events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "bot" and event.get("text") == message:
            return True
    return False


def unavailable_reply(action_call: Dict[str, Any]) -> Dict[str, Any]:
    """The action server's answer to `action_call` (Rasa's POST /webhook body) when none can give it."""
    message = unavailable_message()
    events = (action_call.get("tracker") or {}).get("events") or []
    if _said_this_turn(events, message):
        return {"events": [END_OF_TURN], "responses": []}
    return {"events": [END_OF_TURN], "responses": [{"text": message, "buttons": [TALK_TO_A_PERSON]}]}
