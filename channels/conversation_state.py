"""What the chat channel needs to know of a conversation before Rasa handles a message: whether a person
has the chat, which form is running and the shopper's latest messages (channels/webchat.py).

Reading the whole tracker for that loads and replays every event of the session, and Rasa does it again
for the message itself: on a busy server the frustration check cost a tenth of Rasa's time. On the SQL
tracker store (both profiles) only the newest rows of the kinds that decide these answers are read. A
reverted turn (the two-stage fallback's rewind, an undo) changes what a replay would give, so then, and on
other tracker stores, the whole tracker is read as before.
"""
import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Text, Tuple

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

PAUSE, RESUME, ACTIVE_LOOP, USER = "pause", "resume", "active_loop", "user"
RESETS = ("session_started", "restart")
REVERTS = ("rewind", "undo")
DECIDING_TYPES = (PAUSE, RESUME, ACTIVE_LOOP, USER, *RESETS, *REVERTS)
# Newest rows read at most; a conversation whose answers lie further back is read whole.
ROWS_READ = 200
_UNKNOWN = object()


@dataclass(frozen=True)
class ConversationState:
    paused: bool = False
    active_loop: Optional[Text] = None
    # The shopper's latest messages in this session, oldest first.
    earlier_texts: List[Text] = field(default_factory=list)


async def conversation_state(tracker_store: Any, sender_id: Text, messages: int) -> ConversationState:
    """The state of `sender_id`'s conversation with up to `messages` of the shopper's latest messages."""
    # Rasa wraps the configured store in an AwaitableTrackerStore.
    store = getattr(tracker_store, "_tracker_store", tracker_store)
    if isinstance(store, SQLTrackerStore):
        state = from_rows(_newest_deciding_rows(store, sender_id), messages)
        if state is not None:
            return state
    return from_tracker(await tracker_store.retrieve(sender_id), messages)


def _newest_deciding_rows(store: SQLTrackerStore, sender_id: Text) -> List[Tuple[Text, Text]]:
    event = SQLTrackerStore.SQLEvent
    with store.session_scope() as session:
        rows = (session.query(event.type_name, event.data)
                .filter(event.sender_id == sender_id, event.type_name.in_(DECIDING_TYPES))
                .order_by(event.id.desc()).limit(ROWS_READ).all())
    return [(type_name, data) for type_name, data in rows]


def from_rows(rows: Sequence[Tuple[Text, Text]], messages: int) -> Optional[ConversationState]:
    """The state from tracker-store rows (type, event JSON), newest first; None when only a replay can tell."""
    paused: Any = _UNKNOWN
    loop: Any = _UNKNOWN
    texts: List[Text] = []
    for type_name, data in rows:
        if paused is not _UNKNOWN and loop is not _UNKNOWN and len(texts) == messages:
            break
        if type_name in REVERTS:
            return None
        if type_name in RESETS:
            break
        if type_name in (PAUSE, RESUME) and paused is _UNKNOWN:
            paused = type_name == PAUSE
        elif type_name == ACTIVE_LOOP and loop is _UNKNOWN:
            loop = json.loads(data).get("name")
        elif type_name == USER and len(texts) < messages:
            text = json.loads(data).get("text")
            if text:
                texts.insert(0, text)
    else:
        if len(rows) == ROWS_READ:
            return None
    return ConversationState(paused is True, None if loop is _UNKNOWN else loop, texts)


def from_tracker(tracker: Optional[DialogueStateTracker], messages: int) -> ConversationState:
    if tracker is None:
        return ConversationState()
    texts: List[Text] = []
    for event in reversed(tracker.events):
        if isinstance(event, SessionStarted) or len(texts) == messages:
            break
        if isinstance(event, UserUttered) and event.text:
            texts.insert(0, event.text)
    return ConversationState(tracker.is_paused(), tracker.active_loop_name, texts)
