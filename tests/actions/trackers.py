"""Real rasa_sdk trackers built the way the action server builds them from Rasa's request."""
import asyncio
from typing import Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher


def tracker_for(
    text: str,
    intent: str,
    entities: Optional[List[Dict]] = None,
    channel: str = "rest",
    intent_ranking: Optional[List[Dict]] = None,
    slots: Optional[Dict] = None,
    active_loop: Optional[Dict] = None,
) -> Tracker:
    latest_message = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.9},
        "intent_ranking": intent_ranking or [{"name": intent, "confidence": 0.9}],
        "entities": entities or [],
    }
    events = [
        {"event": "action", "name": "action_listen"},
        {"event": "user", "text": text, "parse_data": latest_message, "input_channel": channel},
    ]
    return Tracker(
        sender_id="shopper-1",
        slots={"shown_products": None, **(slots or {})},
        latest_message=latest_message,
        events=events,
        paused=False,
        followup_action=None,
        active_loop=active_loop or {},
        latest_action_name="action_listen",
    )


def entity(name: str, value: str, role: Optional[str] = None) -> Dict:
    found = {"entity": name, "value": value}
    if role:
        found["role"] = role
    return found


def run(action, tracker):
    """Runs a custom action the way the action server does: (messages it sent, events it returned)."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def slot_events(events):
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}
