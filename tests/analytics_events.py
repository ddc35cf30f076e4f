"""Hand-made conversations for the analytics tests, written as Rasa writes them.

`TrackerStore` is the `events` table of Rasa's SQLTrackerStore (same columns, `data` the event's JSON)
in any database (`TrackerStoreFile`: a SQLite file); `Chat` produces one sender's events in order, one
second apart unless told.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, create_engine, func, insert, select
from sqlalchemy.engine import Connection, Engine

from shop.analytics import AnalyticsCursor
from shop.db import session_scope

EVENTS = Table(
    "events", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255), nullable=False, index=True),
    Column("type_name", String(255), nullable=False),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


class Chat:
    """One sender's events, in the shapes of rasa.shared.core.events' as_dict()."""

    def __init__(self, sender_id: str, at: datetime):
        self.sender_id = sender_id
        self.clock = at.timestamp()
        self.events: List[Dict[str, Any]] = []

    def _add(self, event: Dict[str, Any], after: float) -> "Chat":
        self.clock += after
        self.events.append({**event, "timestamp": self.clock})
        return self

    def session_start(self, after: float = 1) -> "Chat":
        self._add({"event": "action", "name": "action_session_start", "policy": None, "confidence": 1.0}, after)
        self._add({"event": "session_started"}, 0.001)
        return self._add({"event": "action", "name": "action_listen", "policy": None, "confidence": None}, 0.001)

    def user(self, text: str, intent: str, confidence: float = 0.93, after: float = 1) -> "Chat":
        parse = {"intent": {"name": intent, "confidence": confidence}, "entities": [], "text": text,
                 "intent_ranking": [{"name": intent, "confidence": confidence}]}
        return self._add({"event": "user", "text": text, "parse_data": parse, "input_channel": "socketio",
                          "message_id": f"m{len(self.events)}", "metadata": {}}, after)

    def external(self, intent: str, after: float = 1) -> "Chat":
        parse = {"intent": {"name": intent, "confidence": 1.0}, "entities": [], "text": f"/{intent}"}
        return self._add({"event": "user", "text": f"EXTERNAL: {intent}", "parse_data": parse,
                          "input_channel": None, "message_id": None, "metadata": {}}, after)

    def action(self, name: str, after: float = 0.1) -> "Chat":
        return self._add({"event": "action", "name": name, "policy": "RulePolicy", "confidence": 1.0}, after)

    def bot(self, text: str, agent: Optional[str] = None, after: float = 0.1) -> "Chat":
        return self._add({"event": "bot", "text": text, "data": {}, "metadata": {"agent": agent} if agent else {}},
                         after)

    def slot(self, name: str, value: Any, after: float = 0.01) -> "Chat":
        return self._add({"event": "slot", "name": name, "value": value}, after)

    def pause(self, after: float = 1) -> "Chat":
        return self._add({"event": "pause"}, after)

    def resume(self, after: float = 1) -> "Chat":
        return self._add({"event": "resume"}, after)

    def turn(self, text: str, intent: str, action: str, reply: str = "ok", after: float = 1) -> "Chat":
        """A shopper message the bot answers with one action and listens again."""
        self.user(text, intent, after=after).action(action).bot(reply)
        return self.action("action_listen")

    def fallback(self, text: str, after: float = 1) -> "Chat":
        self.user(text, "nlu_fallback", confidence=0.31, after=after).action("action_default_fallback")
        return self.bot("I'm still not sure what you mean.").action("action_listen")

    def handoff(self, reason: str, status: str = "waiting") -> "Chat":
        self.action("action_handoff_request").bot("Getting a person.")
        return self.slot("handoff_reason", reason).slot("handoff_status", status).action("action_listen")


class TrackerStore:
    """A tracker store as Rasa's SQLTrackerStore lays it out, at a SQLAlchemy URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        EVENTS.metadata.create_all(self.engine)

    @staticmethod
    def rows(*chats: Chat) -> List[Dict[str, Any]]:
        """The chats' new events as `events` rows; what is returned is not returned again, as in SQLTrackerStore."""
        rows = []
        for chat in chats:
            for event in chat.events:
                intent = (event.get("parse_data") or {}).get("intent", {}).get("name")
                rows.append({"sender_id": chat.sender_id, "type_name": event["event"], "timestamp": event["timestamp"],
                             "intent_name": intent, "action_name": event.get("name") if event["event"] == "action"
                             else None, "data": json.dumps(event)})
            chat.events = []
        return rows

    def save(self, *chats: Chat, connection: Optional[Connection] = None) -> None:
        """Commit the chats' new events (or add them to the open transaction of `connection`)."""
        if connection is not None:
            connection.execute(insert(EVENTS), self.rows(*chats))
            return
        with self.engine.begin() as own:
            own.execute(insert(EVENTS), self.rows(*chats))

    def close(self) -> None:
        self.engine.dispose()


class TrackerStoreFile(TrackerStore):
    """A SQLite tracker store file, as the default profile's endpoints.yml has Rasa write."""

    def __init__(self, path: Path):
        super().__init__(f"sqlite:///{path}")


def wait_until_copied(shop: Engine, tracker_url: str, deadline: float = 60) -> int:
    """Poll until the shop front's background copy has read every event of the tracker store at `tracker_url`
    (its mark reached the newest id); returns that id. Fails after `deadline` seconds."""
    tracker = create_engine(tracker_url, future=True)
    try:
        with tracker.connect() as connection:
            newest = connection.execute(select(func.max(EVENTS.c.id))).scalar() or 0
    finally:
        tracker.dispose()
    if not newest:
        return 0  # nothing to copy yet
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with session_scope(shop) as session:
            cursor = session.get(AnalyticsCursor, "tracker_store")
            if cursor is not None and cursor.last_event_id >= newest:
                return newest
        time.sleep(0.2)
    raise AssertionError(f"the background copy did not reach tracker event {newest} within {deadline}s")
