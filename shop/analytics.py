"""Conversation analytics for the store team: what the assistant earns and where it fails.

Pipeline
--------
Conversation events (Rasa tracker events) are copied into three tables of the shop database:

* `analytics_events`: one row per event, keyed by a fingerprint (sha256 of the sender id and the
  event's canonical JSON), so the same event arriving twice, from the tracker store and from the
  event broker, or from a re-run, is stored once;
* `analytics_conversations`: each sender's conversations (see "conversation" below);
* `analytics_cursors`: the high-water mark (last `events.id` read) of the tracker store.

`sync_from_tracker_store(engine)` reads Rasa's SQLTrackerStore (`events` table; its URL from
ANALYTICS_TRACKER_STORE_URL, default the SQLite file var/rasa_tracker.db of endpoints.yml, or the
TRACKER_DB_* PostgreSQL database with SHOP_PROFILE=production) from RESCAN_WINDOW ids below the
high-water mark on: PostgreSQL hands out an event's id at insert time but shows the row only once its
transaction commits, so a turn that commits after a later one lands below the mark; the window reads it
anyway and the fingerprints skip what is stored already. `ingest_broker_event(engine, body)` takes one
message of Rasa's event broker (a tracker event plus its `sender_id`) and `python -m shop.analytics
consume` feeds it from RabbitMQ. `refresh(engine)` is one round of the background copy: the tracker
store's new events, then the carts recovered since the worker's last round (shop.report); the shop front
runs it every ANALYTICS_INGEST_SECONDS (web/analytics.py), so the dashboard itself only reads.
The shop's own facts (orders, payments, ratings, leads, cart reminders) are read live from their tables.
The analytics tables have their own MetaData and are created on first use: they are a copy that can
be rebuilt from the tracker store at any time, so they stay out of the shop schema's migrations.

Definitions (every day is a UTC calendar day)
---------------------------------------------
* conversation: one Rasa session of one sender id that holds at least one shopper message. A new
  one starts with the sender's first event and at every `action_session_start` (Rasa runs it after
  an idle timeout or a restart). A conversation counts on the day of its FIRST shopper message, and
  all its messages count there too, even those sent after midnight.
* shopper message: a `user` event, except intents the shop triggers itself through Rasa's API
  (text "EXTERNAL: ...", e.g. payment_confirmed).
* active shoppers: distinct sender ids among the conversations (over a range: distinct over the
  whole range, not the sum of the days).
* fallback message: a shopper message classified `nlu_fallback`, or answered by a fallback action
  (action_default_fallback, action_default_ask_affirmation, action_default_ask_rephrase,
  action_two_stage_fallback) before the next shopper message. fallback rate = fallback messages /
  shopper messages.
* fallback loop: two or more fallback messages in a row (messages classified `out_of_scope`,
  which the fallback's own "No" button sends, neither count nor break the run, as in
  actions/fallback.py).
* handoff: the conversation asked for a person (slot `handoff_status` set to `waiting`, or to
  `unavailable` when nobody was on duty). Its reason is the `handoff_reason` slot set with it.
  handoff rate = handoffs / conversations. "agent joined": an agent claimed it (a `pause` event or
  a message with agent metadata); "back to bot": the bot was resumed after that.
* containment = conversations without a handoff / conversations.
* automated resolution = conversations without a handoff AND without a fallback loop /
  conversations.
* top intents: shopper messages by their intent. unanswered messages: the texts of fallback
  messages (button payloads "/..." left out), grouped case- and space-insensitively.
* funnel: conversations that reached a step or any later one, so the steps never grow:
  search (action_search_products or action_recommend_products ran) -> product viewed
  (action_product_details, action_check_availability or action_show_reviews) -> added to cart
  (slot cart_add_status set to `added`) -> checkout (action_start_checkout ran) -> paid (an order
  placed from this conversation's cart, between its start and the sender's next conversation, was
  paid). Conversion = a step's conversations / the previous step's.
* chat orders and revenue: orders placed through the chat checkout (`checkout_orders`) whose payment
  succeeded (stock taken at payment), counted on the day they were PLACED; revenue is the sum of
  their totals (later refunds are not subtracted).
* CSAT: the average of the 1-5 ratings given in the range: shoppers' ratings of an agent's help
  (handoff_requests.rating, on the day rated) and their ratings of the chat (the feedback survey's
  `feedback.rating`, on the day its row was written, as `python -m shop report` counts them).
* leads by stage: rows of `leads` (the lead form's) created in the range, by stage, as the daily report.
* reminders sent, carts recovered, revenue recovered: as `python -m shop report` (shop/report.py, whose
  `build_daily_report` this module reads): abandoned-cart reminders delivered that day; carts whose order
  was placed after a reminder and paid, on the day paid; the totals of those orders.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, declarative_base

from shop.db import REPO_ROOT, session_scope
from shop.checkout import CheckoutOrder
from shop.handoff import HandoffRequest
from shop.models import Order
from shop.report import LEAD_STAGES, DayRow, build_daily_report, credit_recovered_carts

log = logging.getLogger(__name__)

ANALYTICS_METADATA = MetaData()
AnalyticsBase = declarative_base(metadata=ANALYTICS_METADATA)

DEFAULT_TRACKER_STORE_URL = f"sqlite:///{REPO_ROOT / 'var' / 'rasa_tracker.db'}"
TRACKER_CURSOR = "tracker_store"
BATCH_SIZE = 1000
# Tracker event ids below the high-water mark read again on every sync (see the module doc). Rasa writes a
# turn's events in one short transaction, so a late commit is far fewer ids behind than this.
RESCAN_WINDOW = 1000
DEFAULT_INGEST_SECONDS = 15
TEXT_MAX = 1000
TOP_N = 10
EXTERNAL_PREFIX = "EXTERNAL: "
FALLBACK_INTENT = "nlu_fallback"
FALLBACK_ACTIONS = frozenset({"action_default_fallback", "action_default_ask_affirmation",
                              "action_default_ask_rephrase", "action_two_stage_fallback"})
HANDOFF_STATUSES = frozenset({"waiting", "unavailable"})
FUNNEL_STEPS = ("search", "product viewed", "added to cart", "checkout", "paid")
SEARCH_ACTIONS = frozenset({"action_search_products", "action_recommend_products"})
VIEW_ACTIONS = frozenset({"action_product_details", "action_check_availability", "action_show_reviews"})
CHECKOUT_ACTIONS = frozenset({"action_start_checkout"})


class AnalyticsError(ValueError):
    """Input the pipeline refuses; nothing was stored. `str(error)` is fit to show."""


# ----------------------------------------------------------------------------- tables


class AnalyticsConversation(AnalyticsBase):
    __tablename__ = "analytics_conversations"
    id = Column(Integer, primary_key=True)
    sender_id = Column(String(255), nullable=False, index=True)
    started_at = Column(DateTime, nullable=False)
    first_message_at = Column(DateTime, nullable=True)
    day = Column(Date, nullable=True, index=True)  # the day of the first shopper message
    last_event_at = Column(DateTime, nullable=False)


class AnalyticsEvent(AnalyticsBase):
    __tablename__ = "analytics_events"
    id = Column(Integer, primary_key=True)
    fingerprint = Column(String(64), nullable=False, unique=True)
    source = Column(String(10), nullable=False)  # tracker, broker
    sender_id = Column(String(255), nullable=False, index=True)
    conversation_id = Column(Integer, ForeignKey("analytics_conversations.id", ondelete="CASCADE"),
                             nullable=False, index=True)
    kind = Column(String(12), nullable=False)  # see _kind_of
    type_name = Column(String(40), nullable=False)
    timestamp = Column(Float, nullable=False)
    occurred_at = Column(DateTime, nullable=False)
    name = Column(String(255), nullable=True)  # intent, action, slot or loop name
    value = Column(Text, nullable=True)  # a message's text or a slot's value (JSON)
    confidence = Column(Float, nullable=True)


class AnalyticsCursor(AnalyticsBase):
    __tablename__ = "analytics_cursors"
    name = Column(String(80), primary_key=True)
    last_event_id = Column(Integer, nullable=False, default=0)
    updated_at = Column(DateTime, nullable=False)


def ensure_analytics_tables(engine: Engine) -> None:
    ANALYTICS_METADATA.create_all(engine)


# ----------------------------------------------------------------------------- ingestion


def tracker_store_url(environ: Optional[Mapping[str, str]] = None) -> str:
    """ANALYTICS_TRACKER_STORE_URL; else Rasa's tracker store of the profile (TRACKER_DB_* in production)."""
    env = os.environ if environ is None else environ
    if env.get("ANALYTICS_TRACKER_STORE_URL"):
        return env["ANALYTICS_TRACKER_STORE_URL"]
    if env.get("SHOP_PROFILE") == "production":
        raw_port = env.get("TRACKER_DB_PORT") or "5432"
        if not raw_port.isdigit():
            raise AnalyticsError(f"TRACKER_DB_PORT must be a port number, got {raw_port!r}")
        return URL.create(
            "postgresql+psycopg2", username=env.get("TRACKER_DB_USER") or "postgres",
            password=env.get("TRACKER_DB_PASSWORD") or None, host=env.get("TRACKER_DB_HOST") or "127.0.0.1",
            port=int(raw_port), database=env.get("TRACKER_DB_NAME") or "rasa_tracker",
        ).render_as_string(hide_password=False)
    return DEFAULT_TRACKER_STORE_URL


def ingest_interval_seconds(environ: Optional[Mapping[str, str]] = None) -> int:
    """ANALYTICS_INGEST_SECONDS: how often the shop front copies new conversation events (0: never)."""
    env = os.environ if environ is None else environ
    raw = (env.get("ANALYTICS_INGEST_SECONDS") or "").strip() or str(DEFAULT_INGEST_SECONDS)
    if not raw.isdigit():
        raise AnalyticsError(f"ANALYTICS_INGEST_SECONDS must be a whole number of seconds (0: off), got {raw!r}")
    return int(raw)


def _fingerprint(sender_id: str, event: Mapping[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "sender_id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((sender_id + "\n" + canonical).encode("utf-8")).hexdigest()


def _kind_of(event: Mapping[str, Any]) -> Tuple[str, Optional[str], Optional[str], Optional[float]]:
    """(kind, name, value, confidence) of a tracker event, the parts the metrics read."""
    kind = event.get("event")
    if kind == "user":
        text = str(event.get("text") or "")
        intent = (event.get("parse_data") or {}).get("intent") or {}
        name = intent.get("name") or None
        if text.startswith(EXTERNAL_PREFIX):
            return "external", name, text[:TEXT_MAX], None
        confidence = intent.get("confidence")
        return "message", name, text[:TEXT_MAX], float(confidence) if confidence is not None else None
    if kind == "bot":
        by_agent = bool((event.get("metadata") or {}).get("agent"))
        return ("agent" if by_agent else "bot"), None, str(event.get("text") or "")[:TEXT_MAX], None
    if kind == "action":
        return "action", event.get("name"), None, None
    if kind == "slot":
        return "slot", event.get("name"), json.dumps(event.get("value"), default=str)[:TEXT_MAX], None
    if kind == "active_loop":
        return "loop", event.get("name"), None, None
    if kind in ("pause", "resume", "session_started", "restart"):
        return kind if kind != "session_started" else "session", None, None, None
    return "other", None, None, None


def _moment(timestamp: float) -> datetime:
    return datetime.utcfromtimestamp(timestamp)


def _chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    """Bounded IN lists, which every database accepts."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Ingestor:
    """Adds a batch of events to the analytics tables inside one unit of work, each at most once."""

    def __init__(self, session: Session, source: str):
        self.session = session
        self.source = source
        self._conversations: Dict[str, List[AnalyticsConversation]] = {}  # by sender, oldest first

    def _load_conversations(self, senders: Sequence[str]) -> None:
        wanted = [s for s in senders if s not in self._conversations]
        for sender in wanted:
            self._conversations[sender] = []
        for chunk in _chunks(wanted):
            for conversation in self.session.execute(
                select(AnalyticsConversation).where(AnalyticsConversation.sender_id.in_(chunk))
                .order_by(AnalyticsConversation.started_at, AnalyticsConversation.id)
            ).scalars():
                self._conversations[conversation.sender_id].append(conversation)

    def _conversation_for(self, sender_id: str, event: Mapping[str, Any], at: datetime) -> AnalyticsConversation:
        known = self._conversations[sender_id]
        starts_new = event.get("event") == "action" and event.get("name") == "action_session_start"
        if known and not starts_new:
            earlier = [c for c in known if c.started_at <= at]
            # an event older than the sender's first known conversation belongs to its start
            return earlier[-1] if earlier else known[0]
        conversation = AnalyticsConversation(sender_id=sender_id, started_at=at, last_event_at=at)
        self.session.add(conversation)
        self.session.flush()
        known.append(conversation)
        known.sort(key=lambda c: (c.started_at, c.id))
        return conversation

    def add_all(self, events: Sequence[Tuple[str, Mapping[str, Any]]]) -> int:
        """Store the (sender id, event) pairs not stored yet; returns how many were new."""
        keyed = [(_fingerprint(sender_id, event), sender_id, event) for sender_id, event in events]
        stored = set()
        for chunk in _chunks([fingerprint for fingerprint, _, _ in keyed]):
            stored.update(self.session.execute(
                select(AnalyticsEvent.fingerprint).where(AnalyticsEvent.fingerprint.in_(chunk))).scalars())
        self._load_conversations(sorted({sender_id for _, sender_id, _ in keyed}))
        rows = []
        for fingerprint, sender_id, event in keyed:
            if fingerprint in stored:
                continue
            stored.add(fingerprint)
            timestamp = float(event["timestamp"])
            at = _moment(timestamp)
            kind, name, value, confidence = _kind_of(event)
            conversation = self._conversation_for(sender_id, event, at)
            if kind == "message" and (conversation.first_message_at is None or at < conversation.first_message_at):
                conversation.first_message_at, conversation.day = at, at.date()
            conversation.last_event_at = max(conversation.last_event_at, at)
            rows.append(dict(
                fingerprint=fingerprint, source=self.source, sender_id=sender_id, conversation_id=conversation.id,
                kind=kind, type_name=str(event.get("event"))[:40], timestamp=timestamp, occurred_at=at,
                name=str(name)[:255] if name else None, value=value, confidence=confidence,
            ))
        if rows:
            self.session.execute(insert(AnalyticsEvent), rows)
        return len(rows)


def _checked_event(body: Union[str, bytes, Mapping[str, Any]]) -> Tuple[str, Dict[str, Any]]:
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as error:
            raise AnalyticsError(f"the broker message is not JSON ({error})") from None
    if not isinstance(body, Mapping):
        raise AnalyticsError("the broker message must be a JSON object (a Rasa tracker event)")
    sender_id = body.get("sender_id")
    if not isinstance(sender_id, str) or not sender_id.strip():
        raise AnalyticsError("the broker message has no sender_id")
    if not isinstance(body.get("event"), str):
        raise AnalyticsError("the broker message has no event type")
    timestamp = body.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp < 0:
        raise AnalyticsError("the broker message has no valid timestamp")
    return sender_id[:255], dict(body)


def _store_once(engine: Engine, source: str, events: Sequence[Tuple[str, Mapping[str, Any]]],
                tracker_mark: Optional[int]) -> int:
    with session_scope(engine) as session:
        added = _Ingestor(session, source).add_all(events)
        if tracker_mark is not None:
            cursor = session.get(AnalyticsCursor, TRACKER_CURSOR)
            if cursor is None:
                cursor = AnalyticsCursor(name=TRACKER_CURSOR)
                session.add(cursor)
            cursor.last_event_id, cursor.updated_at = tracker_mark, datetime.utcnow()
    return added


def _store(engine: Engine, source: str, events: Sequence[Tuple[str, Mapping[str, Any]]],
           tracker_mark: Optional[int] = None) -> int:
    """Add the events in one unit of work (and move the tracker store's mark with them); how many were new.

    Another ingestor (the broker consumer, a command, a second shop front) may store some of the same
    events at the same moment: the unique fingerprint then refuses this unit of work, and the second try
    skips what the other one stored."""
    try:
        return _store_once(engine, source, events, tracker_mark)
    except IntegrityError:
        log.info("another ingestor stored some of these events first; storing the rest")
        return _store_once(engine, source, events, tracker_mark)


def ingest_broker_event(engine: Engine, body: Union[str, bytes, Mapping[str, Any]]) -> bool:
    """Store one event broker message; True when it was new. A malformed one raises AnalyticsError."""
    sender_id, event = _checked_event(body)
    ensure_analytics_tables(engine)
    return _store(engine, "broker", [(sender_id, event)]) == 1


def _tracker_events_table() -> Table:
    # The columns of Rasa's SQLTrackerStore.SQLEvent that the pipeline reads.
    return Table("events", MetaData(), Column("id", Integer, primary_key=True), Column("sender_id", String(255)),
                 Column("type_name", String(255)), Column("timestamp", Float), Column("data", Text))


@dataclass(frozen=True)
class SyncResult:
    read: int  # tracker events past the high-water mark
    added: int  # events stored now (new ones, and late commits found in the re-read window)
    high_water_mark: int
    rechecked: int = 0  # events of the window below the mark read again
    note: str = ""


def _tracker_engine(url: str) -> Optional[Engine]:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return None  # never create an empty tracker store where Rasa has not written one
    return create_engine(url, future=True)


def _decoded(rows: Sequence) -> List[Tuple[str, Dict[str, Any]]]:
    events = []
    for row in rows:
        try:
            event = json.loads(row.data or "{}")
        except ValueError:
            log.warning("tracker event %s is not JSON; skipped", row.id)
            continue
        if isinstance(event, dict) and isinstance(event.get("timestamp"), (int, float)):
            events.append((row.sender_id, event))
    return events


def sync_from_tracker_store(engine: Engine, tracker_url: Optional[str] = None,
                            batch_size: int = BATCH_SIZE) -> SyncResult:
    """Copy the tracker store's events from the re-read window below the mark on; never double counts."""
    url = tracker_url or tracker_store_url()
    ensure_analytics_tables(engine)
    source = _tracker_engine(url)
    with session_scope(engine) as session:
        cursor = session.get(AnalyticsCursor, TRACKER_CURSOR)
        mark = cursor.last_event_id if cursor else 0
    if source is None:
        return SyncResult(0, 0, mark, note="no tracker store yet (no conversation has been held)")
    events = _tracker_events_table()
    read = added = rechecked = 0
    try:
        with source.connect() as connection:
            if not inspect(connection).has_table("events"):
                return SyncResult(0, 0, mark, note="the tracker store has no events table yet")
            newest = connection.execute(select(func.max(events.c.id))).scalar() or 0
            if newest < mark:
                # A fresh tracker store numbers from 1 again; fingerprints keep old events single.
                log.warning("the tracker store restarted its event ids (%s < %s): reading it from the start",
                            newest, mark)
                mark = 0
            previous_mark, after = mark, max(mark - RESCAN_WINDOW, 0)
            while True:
                rows = connection.execute(
                    select(events.c.id, events.c.sender_id, events.c.data)
                    .where(events.c.id > after).order_by(events.c.id).limit(batch_size)
                ).all()
                if not rows:
                    break
                after = rows[-1].id
                mark = max(mark, after)
                added += _store(engine, "tracker", _decoded(rows), tracker_mark=mark)
                past = sum(1 for row in rows if row.id > previous_mark)
                read, rechecked = read + past, rechecked + len(rows) - past
    finally:
        source.dispose()
    return SyncResult(read, added, mark, rechecked)


def refresh(engine: Engine, tracker_url: Optional[str] = None, now: Optional[datetime] = None) -> SyncResult:
    """One round of the background copy: new tracker events, then the carts recovered since the worker's
    last round (as `python -m shop report` does first), so the dashboard's figures are current."""
    synced = sync_from_tracker_store(engine, tracker_url)
    credit_recovered_carts(engine, now)
    return synced


# ----------------------------------------------------------------------------- metrics


@dataclass
class ConversationFacts:
    """What one conversation did, as the metric definitions (module doc) read it."""

    sender_id: str
    day: date
    started_at: datetime
    messages: int = 0
    fallback_messages: int = 0
    fallback_loop: bool = False
    handoff_reason: Optional[str] = None
    agent_joined: bool = False
    back_to_bot: bool = False
    intents: List[str] = field(default_factory=list)
    unanswered: List[Tuple[str, datetime]] = field(default_factory=list)
    steps: set = field(default_factory=set)

    @property
    def handed_off(self) -> bool:
        return self.handoff_reason is not None

    @property
    def automated(self) -> bool:
        return not self.handed_off and not self.fallback_loop

    def reached(self, step: str) -> bool:
        index = FUNNEL_STEPS.index(step)
        return any(later in self.steps for later in FUNNEL_STEPS[index:])


def _slot_value(event: AnalyticsEvent) -> Any:
    try:
        return json.loads(event.value) if event.value is not None else None
    except ValueError:
        return None


def conversation_facts(conversation: AnalyticsConversation, events: Sequence[AnalyticsEvent]) -> ConversationFacts:
    facts = ConversationFacts(conversation.sender_id, conversation.day, conversation.started_at)
    current: Optional[AnalyticsEvent] = None  # the latest shopper message
    current_fell_back = False
    run = 0
    pending_reason: Optional[str] = None

    def close_message() -> None:
        nonlocal run
        if current is None:
            return
        counts_for_run = current.name != "out_of_scope"
        if current_fell_back:
            facts.fallback_messages += 1
            text = " ".join((current.value or "").split())
            if text and not text.startswith("/"):
                facts.unanswered.append((text, current.occurred_at))
            if counts_for_run:
                run += 1
                facts.fallback_loop = facts.fallback_loop or run >= 2
        elif counts_for_run:
            run = 0

    for event in events:
        if event.kind == "message":
            close_message()
            current, current_fell_back = event, event.name == FALLBACK_INTENT
            facts.messages += 1
            if event.name:
                facts.intents.append(event.name)
        elif event.kind == "external":
            # what the shop triggers (payment confirmed) is no shopper message, and ends the last one's turn
            close_message()
            current = None
        elif event.kind == "action":
            if event.name in FALLBACK_ACTIONS and current is not None:
                current_fell_back = True
            if event.name in SEARCH_ACTIONS:
                facts.steps.add("search")
            elif event.name in VIEW_ACTIONS:
                facts.steps.add("product viewed")
            elif event.name in CHECKOUT_ACTIONS:
                facts.steps.add("checkout")
        elif event.kind == "slot":
            value = _slot_value(event)
            if event.name == "handoff_reason" and value:
                pending_reason = str(value)
            elif event.name == "handoff_status" and value in HANDOFF_STATUSES and facts.handoff_reason is None:
                facts.handoff_reason = pending_reason or "unknown"
            elif event.name == "cart_add_status" and value == "added":
                facts.steps.add("added to cart")
        elif event.kind in ("pause", "agent"):
            facts.agent_joined = True
        elif event.kind == "resume" and facts.agent_joined:
            facts.back_to_bot = True
    close_message()
    return facts


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date

    def __post_init__(self):
        if self.last < self.first:
            raise AnalyticsError(f"the range ends ({self.last}) before it starts ({self.first})")
        if self.last >= date.max:
            raise AnalyticsError(f"the range must end before {date.max}")

    @classmethod
    def of(cls, first: Optional[date] = None, last: Optional[date] = None, days: int = 30) -> "DateRange":
        """The range asked for: a missing end is today (UTC), a missing start `days` days up to the end."""
        last = last or datetime.utcnow().date()
        try:
            return cls(first or last - timedelta(days=days - 1), last)
        except OverflowError:
            raise AnalyticsError(f"the range must start after {date.min}") from None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time())

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.last + timedelta(days=1), datetime.min.time())

    def days(self) -> List[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass
class DayFigures:
    day: date
    conversations: int = 0
    active_shoppers: int = 0
    messages: int = 0
    fallback_messages: int = 0
    handoffs: int = 0
    contained: int = 0
    automated: int = 0
    chat_orders_paid: int = 0
    revenue_cents: int = 0
    ratings: int = 0
    rating_sum: int = 0
    reminders_sent: int = 0
    carts_recovered: int = 0
    revenue_recovered_cents: int = 0

    @property
    def csat(self) -> Optional[float]:
        return round(self.rating_sum / self.ratings, 2) if self.ratings else None


def _rate(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


@dataclass
class AnalyticsReport:
    period: DateRange
    daily: List[DayFigures]
    conversations: int
    active_shoppers: int
    messages: int
    fallback_messages: int
    handoffs: int
    agent_joined: int
    back_to_bot: int
    contained: int
    automated: int
    handoff_reasons: List[Tuple[str, int]]
    top_intents: List[Tuple[str, int]]
    unanswered: List[Tuple[str, int, datetime]]  # (text, times, last seen), most frequent first
    funnel: List[Tuple[str, int, Optional[float]]]  # (step, conversations, conversion from the previous)
    chat_orders_paid: int
    revenue_cents: int
    ratings: int
    csat: Optional[float]
    leads_by_stage: List[Tuple[str, int]]  # hot, warm, cold, then any other stage seen
    reminders_sent: int
    carts_recovered: int
    revenue_recovered_cents: int

    @property
    def containment_rate(self) -> Optional[float]:
        return _rate(self.contained, self.conversations)

    @property
    def automated_resolution_rate(self) -> Optional[float]:
        return _rate(self.automated, self.conversations)

    @property
    def handoff_rate(self) -> Optional[float]:
        return _rate(self.handoffs, self.conversations)

    @property
    def fallback_rate(self) -> Optional[float]:
        return _rate(self.fallback_messages, self.messages)

    def summary(self) -> List[Tuple[str, Any]]:
        return [
            ("from", self.period.first.isoformat()), ("to", self.period.last.isoformat()),
            ("conversations", self.conversations), ("active_shoppers", self.active_shoppers),
            ("shopper_messages", self.messages), ("automated_resolutions", self.automated),
            ("automated_resolution_rate", self.automated_resolution_rate), ("contained", self.contained),
            ("containment_rate", self.containment_rate), ("handoffs", self.handoffs),
            ("handoff_rate", self.handoff_rate), ("handoffs_agent_joined", self.agent_joined),
            ("handoffs_back_to_bot", self.back_to_bot), ("fallback_messages", self.fallback_messages),
            ("fallback_rate", self.fallback_rate), ("chat_orders_paid", self.chat_orders_paid),
            ("revenue_cents", self.revenue_cents), ("ratings", self.ratings), ("csat_average", self.csat),
            ("cart_reminders_sent", self.reminders_sent), ("carts_recovered", self.carts_recovered),
            ("revenue_recovered_cents", self.revenue_recovered_cents),
        ]

    def tables(self) -> Dict[str, Tuple[List[str], List[list]]]:
        """Every table of the report as (header, rows): what the CSV export writes."""
        return {
            "summary": (["metric", "value"], [[k, "" if v is None else v] for k, v in self.summary()]),
            "daily": (
                ["day", "conversations", "active_shoppers", "shopper_messages", "fallback_messages", "handoffs",
                 "contained", "automated_resolutions", "chat_orders_paid", "revenue_cents", "ratings",
                 "csat_average", "cart_reminders_sent", "carts_recovered", "revenue_recovered_cents"],
                [[d.day.isoformat(), d.conversations, d.active_shoppers, d.messages, d.fallback_messages, d.handoffs,
                  d.contained, d.automated, d.chat_orders_paid, d.revenue_cents, d.ratings,
                  "" if d.csat is None else d.csat, d.reminders_sent, d.carts_recovered, d.revenue_recovered_cents]
                 for d in self.daily],
            ),
            "handoff_reasons": (["reason", "handoffs"], [list(r) for r in self.handoff_reasons]),
            "top_intents": (["intent", "messages"], [list(r) for r in self.top_intents]),
            "unanswered_messages": (["text", "times", "last_seen"],
                                    [[t, n, seen.isoformat(sep=" ", timespec="seconds")]
                                     for t, n, seen in self.unanswered]),
            "funnel": (["step", "conversations", "conversion_from_previous"],
                       [[s, n, "" if c is None else c] for s, n, c in self.funnel]),
            "leads_by_stage": (["stage", "leads"], [list(r) for r in self.leads_by_stage]),
        }


def _facts_in_range(session: Session, period: DateRange) -> List[ConversationFacts]:
    conversations = session.execute(
        select(AnalyticsConversation).where(AnalyticsConversation.day >= period.first,
                                            AnalyticsConversation.day <= period.last)
        .order_by(AnalyticsConversation.id)
    ).scalars().all()
    if not conversations:
        return []
    by_conversation: Dict[int, List[AnalyticsEvent]] = defaultdict(list)
    for chunk in _chunks([c.id for c in conversations]):
        for event in session.execute(
            select(AnalyticsEvent).where(AnalyticsEvent.conversation_id.in_(chunk))
            .order_by(AnalyticsEvent.timestamp, AnalyticsEvent.id)
        ).scalars():
            by_conversation[event.conversation_id].append(event)
    facts = [conversation_facts(c, by_conversation[c.id]) for c in conversations]
    _mark_paid(session, conversations, facts)
    return facts


def _paid_chat_orders(session: Session, start: Optional[datetime] = None, end: Optional[datetime] = None,
                      senders: Optional[Iterable[str]] = None) -> List[Tuple[Optional[str], datetime, int]]:
    """(conversation id, placed at, total cents) of chat checkout orders whose payment succeeded."""
    query = (select(Order.conversation_id, Order.placed_at, Order.total_cents)
             .join(CheckoutOrder, CheckoutOrder.order_id == Order.id)
             .where(CheckoutOrder.stock_taken_at.is_not(None)))
    if start is not None:
        query = query.where(Order.placed_at >= start, Order.placed_at < end)
    if senders is not None:
        query = query.where(Order.conversation_id.in_(list(senders)))
    return [tuple(row) for row in session.execute(query)]


def _mark_paid(session: Session, conversations: Sequence[AnalyticsConversation],
               facts: Sequence[ConversationFacts]) -> None:
    senders = sorted({c.sender_id for c in conversations})
    orders = [order for chunk in _chunks(senders) for order in _paid_chat_orders(session, senders=chunk)]
    if not orders:
        return
    starts: Dict[str, List[datetime]] = defaultdict(list)
    for sender, started in session.execute(
        select(AnalyticsConversation.sender_id, AnalyticsConversation.started_at)
        .where(AnalyticsConversation.sender_id.in_(senders))
    ):
        starts[sender].append(started)
    for conversation, fact in zip(conversations, facts):
        later = [s for s in starts[conversation.sender_id] if s > conversation.started_at]
        until = min(later) if later else datetime.max
        if any(sender == conversation.sender_id and conversation.started_at <= placed < until
               for sender, placed, _ in orders):
            fact.steps.add("paid")


def _agent_ratings(session: Session, period: DateRange) -> List[Tuple[date, int]]:
    """(day rated, stars) of the shoppers' ratings of an agent's help in the range."""
    return [(rated.date(), stars) for rated, stars in session.execute(
        select(HandoffRequest.rated_at, HandoffRequest.rating)
        .where(HandoffRequest.rating.is_not(None), HandoffRequest.rated_at >= period.start,
               HandoffRequest.rated_at < period.end))]


def _leads_by_stage(shop_days: Sequence[DayRow]) -> List[Tuple[str, int]]:
    totals: Counter = Counter()
    for row in shop_days:
        totals.update(row.leads_by_stage)
    hottest_first = list(reversed(LEAD_STAGES))
    return [(stage, totals[stage]) for stage in hottest_first] + sorted(
        (stage, n) for stage, n in totals.items() if stage not in hottest_first)


def build_report(engine: Engine, period: DateRange, top: int = TOP_N) -> AnalyticsReport:
    """Every metric of the module doc over `period`, with one row per day."""
    ensure_analytics_tables(engine)
    with session_scope(engine) as session:
        facts = _facts_in_range(session, period)
        orders = _paid_chat_orders(session, period.start, period.end)
        agent_ratings = _agent_ratings(session, period)
        shop_days = build_daily_report(session, period.first, period.last)

    daily = {day: DayFigures(day) for day in period.days()}
    shoppers_by_day: Dict[date, set] = defaultdict(set)
    for fact in facts:
        row = daily[fact.day]
        row.conversations += 1
        row.messages += fact.messages
        row.fallback_messages += fact.fallback_messages
        row.handoffs += fact.handed_off
        row.contained += not fact.handed_off
        row.automated += fact.automated
        shoppers_by_day[fact.day].add(fact.sender_id)
    for day, senders in shoppers_by_day.items():
        daily[day].active_shoppers = len(senders)
    for _, placed, total in orders:
        daily[placed.date()].chat_orders_paid += 1
        daily[placed.date()].revenue_cents += total
    for day, stars in agent_ratings:
        daily[day].ratings += 1
        daily[day].rating_sum += stars
    for shop_day in shop_days:  # the chat's own ratings, leads, reminders: as `python -m shop report`
        row = daily[shop_day.day]
        row.ratings += shop_day.ratings
        row.rating_sum += shop_day.rating_total
        row.reminders_sent += shop_day.reminders_sent
        row.carts_recovered += shop_day.carts_recovered
        row.revenue_recovered_cents += shop_day.revenue_recovered_cents
    ratings = sum(d.ratings for d in daily.values())

    unanswered: Dict[str, List] = {}
    for fact in facts:
        for text, seen in fact.unanswered:
            key = text.casefold()
            entry = unanswered.setdefault(key, [text, 0, seen])
            entry[1] += 1
            if seen >= entry[2]:
                entry[0], entry[2] = text, seen
    funnel = []
    previous = None
    for step in FUNNEL_STEPS:
        reached = sum(1 for fact in facts if fact.reached(step))
        funnel.append((step, reached, None if previous is None else _rate(reached, previous)))
        previous = reached

    return AnalyticsReport(
        period=period,
        daily=[daily[day] for day in period.days()],
        conversations=len(facts),
        active_shoppers=len({f.sender_id for f in facts}),
        messages=sum(f.messages for f in facts),
        fallback_messages=sum(f.fallback_messages for f in facts),
        handoffs=sum(f.handed_off for f in facts),
        agent_joined=sum(f.handed_off and f.agent_joined for f in facts),
        back_to_bot=sum(f.handed_off and f.back_to_bot for f in facts),
        contained=sum(not f.handed_off for f in facts),
        automated=sum(f.automated for f in facts),
        handoff_reasons=sorted(Counter(f.handoff_reason for f in facts if f.handed_off).items(),
                               key=lambda item: (-item[1], item[0])),
        top_intents=sorted(Counter(i for f in facts for i in f.intents).items(),
                           key=lambda item: (-item[1], item[0]))[:top],
        unanswered=sorted((tuple(e) for e in unanswered.values()), key=lambda e: (-e[1], e[0].casefold())),
        funnel=funnel,
        chat_orders_paid=len(orders),
        revenue_cents=sum(total for _, _, total in orders),
        ratings=ratings,
        csat=round(sum(d.rating_sum for d in daily.values()) / ratings, 2) if ratings else None,
        leads_by_stage=_leads_by_stage(shop_days),
        reminders_sent=sum(d.reminders_sent for d in daily.values()),
        carts_recovered=sum(d.carts_recovered for d in daily.values()),
        revenue_recovered_cents=sum(d.revenue_recovered_cents for d in daily.values()),
    )


# ----------------------------------------------------------------------------- output


def _percent(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _money(cents: int, symbol: str) -> str:
    return f"{symbol}{cents / 100:,.2f}"


def format_report(report: AnalyticsReport, currency_symbol: str = "$") -> str:
    """The report as the terminal prints it."""
    r = report
    lines = [
        f"Conversation analytics {r.period.first} to {r.period.last} (UTC days)",
        f"  conversations           {r.conversations:>8}",
        f"  active shoppers         {r.active_shoppers:>8}",
        f"  automated resolution    {_percent(r.automated_resolution_rate):>8}  ({r.automated})",
        f"  containment             {_percent(r.containment_rate):>8}  ({r.contained})",
        f"  handoff rate            {_percent(r.handoff_rate):>8}  ({r.handoffs}; agent joined {r.agent_joined}, "
        f"back to bot {r.back_to_bot})",
        f"  fallback rate           {_percent(r.fallback_rate):>8}  ({r.fallback_messages} of {r.messages} messages)",
        f"  CSAT                    {('-' if r.csat is None else f'{r.csat:.2f}/5'):>8}  ({r.ratings} ratings)",
        f"  chat orders paid        {r.chat_orders_paid:>8}",
        f"  revenue from chat       {_money(r.revenue_cents, currency_symbol):>8}",
        f"  carts recovered         {r.carts_recovered:>8}  ({_money(r.revenue_recovered_cents, currency_symbol)} "
        f"recovered; {r.reminders_sent} reminders sent)",
        "",
        "Funnel (conversations)",
    ]
    lines += [f"  {step:<22}{n:>8}  {'' if c is None else _percent(c) + ' of previous'}" for step, n, c in r.funnel]
    lines += ["", "Handoff reasons"] + ([f"  {reason:<22}{n:>8}" for reason, n in r.handoff_reasons] or ["  none"])
    lines += ["", "Top intents"] + ([f"  {intent:<22}{n:>8}" for intent, n in r.top_intents] or ["  none"])
    lines += ["", "Top unanswered messages"] + (
        [f"  {n:>4}x  {text}" for text, n, _ in r.unanswered[:TOP_N]] or ["  none"])
    lines += ["", "Leads by stage"] + [f"  {stage:<22}{n:>8}" for stage, n in r.leads_by_stage]
    lines += ["", "Per day", "  day          conv  shoppers  handoffs  fallback msgs  paid orders     revenue"
                             "  carts recovered   recovered"]
    lines += [f"  {d.day}  {d.conversations:>5}  {d.active_shoppers:>8}  {d.handoffs:>8}  {d.fallback_messages:>13}  "
              f"{d.chat_orders_paid:>11}  {_money(d.revenue_cents, currency_symbol):>10}  {d.carts_recovered:>15}  "
              f"{_money(d.revenue_recovered_cents, currency_symbol):>10}" for d in r.daily]
    return "\n".join(lines)


def write_csv_tables(report: AnalyticsReport, directory: Path) -> List[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (header, rows) in report.tables().items():
        path = directory / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    return written


def table_csv(report: AnalyticsReport, name: str) -> str:
    header, rows = report.tables()[name]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


_YAML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def unanswered_nlu_stub(report: AnalyticsReport, intent: str = "label_me") -> str:
    """Rasa NLU YAML with every unanswered message as an example of a placeholder intent.

    A designer moves each example to its real intent (or a new one); until then the file is meant
    to stay out of data/ (the placeholder intent is in no domain).
    """
    lines = [
        f"# Messages the assistant could not answer, {report.period.first} to {report.period.last}.",
        "# Move each example under the intent it should have matched, then put the file in data/nlu/.",
        "# metadata.times: how often shoppers sent it in that period.",
        'version: "3.1"',
        "nlu:",
    ]
    if not report.unanswered:
        return "\n".join(lines[:-1] + ["nlu: []"]) + "\n"
    lines += [f"- intent: {intent}", "  examples:"]
    for text, times, last_seen in report.unanswered:
        clean = _YAML_UNSAFE.sub(" ", text)
        lines += [f"  - text: {json.dumps(clean, ensure_ascii=False)}", "    metadata:",
                  f"      times: {times}", f"      last_seen: \"{last_seen.isoformat(timespec='seconds')}\""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- RabbitMQ consumer


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    username: str
    password: str
    queue: str


def broker_settings(environ: Optional[Mapping[str, str]] = None) -> BrokerSettings:
    env = os.environ if environ is None else environ
    raw_port = env.get("RABBITMQ_PORT") or "5672"
    if not raw_port.isdigit():
        raise AnalyticsError(f"RABBITMQ_PORT must be a port number, got {raw_port!r}")
    return BrokerSettings(host=env.get("RABBITMQ_HOST") or "127.0.0.1", port=int(raw_port),
                          username=env.get("RABBITMQ_USER") or "guest",
                          password=env.get("RABBITMQ_PASSWORD") or "guest",
                          queue=env.get("RABBITMQ_QUEUE") or "rasa_events")


async def consume(engine: Engine, settings: BrokerSettings, *, stop_after: Optional[int] = None) -> int:
    """Feed the broker's queue into the analytics tables; a message is acknowledged once stored.

    A malformed message is logged and dropped (acknowledged), so it can't block the queue.
    Returns how many messages were handled (runs until cancelled unless `stop_after` is given).
    """
    import aio_pika

    ensure_analytics_tables(engine)
    loop = asyncio.get_running_loop()
    handled = 0
    connection = await aio_pika.connect_robust(host=settings.host, port=settings.port, login=settings.username,
                                               password=settings.password)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.queue, durable=True)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process(requeue=True):
                    try:
                        await loop.run_in_executor(None, ingest_broker_event, engine, message.body)
                    except AnalyticsError as error:
                        log.warning("dropped a broker message: %s", error)
                handled += 1
                if stop_after is not None and handled >= stop_after:
                    break
    return handled


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m shop.analytics consume`: store the RabbitMQ event broker's events (production profile)."""
    from shop.db import get_engine

    args = sys.argv[1:] if argv is None else argv
    if args != ["consume"]:
        print("usage: python -m shop.analytics consume   (RABBITMQ_* settings as for Rasa's event broker)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = broker_settings()
    print(f"Storing conversation events from queue {settings.queue} on {settings.host}:{settings.port}; "
          "Ctrl-C stops.", flush=True)
    try:
        asyncio.run(consume(get_engine(), settings))
    except KeyboardInterrupt:
        return 0
    return 0


# ----------------------------------------------------------------------------- `python -m shop analytics | unanswered`


def add_analytics_commands(commands, common, day_type) -> None:
    """The `analytics` and `unanswered` subcommands of shop/cli.py (`day_type` parses YYYY-MM-DD)."""
    import argparse

    def with_range(parser) -> None:
        parser.add_argument("--from", dest="first", type=day_type, metavar="YYYY-MM-DD",
                            help="first day, UTC (default: 29 days before --to)")
        parser.add_argument("--to", dest="last", type=day_type, metavar="YYYY-MM-DD",
                            help="last day, UTC (default: today)")

    report = commands.add_parser(
        "analytics", parents=[common], help="conversation analytics: resolution, handoffs, funnel, revenue",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Copy new conversation events from Rasa's tracker store (ANALYTICS_TRACKER_STORE_URL) into\n"
                     "the shop database and credit recovered carts, then print the metrics of the range\n"
                     "(definitions: shop/analytics.py)."),
    )
    with_range(report)
    report.add_argument("--csv", metavar="DIR", help="also write every table as DIR/<table>.csv")
    unanswered = commands.add_parser(
        "unanswered", parents=[common], help="export the messages the bot could not answer as a Rasa NLU stub",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the range's unanswered messages (those that hit a fallback) as NLU YAML to label.",
    )
    with_range(unanswered)
    unanswered.add_argument("--out", metavar="FILE", required=True, help="the YAML file to write")


def _cli_report(args) -> AnalyticsReport:
    from shop.db import database_url, make_engine

    period = DateRange.of(args.first, args.last)
    engine = make_engine(getattr(args, "database_url", None) or database_url())
    synced = refresh(engine)
    print(f"Tracker store: {synced.added} new events stored ({synced.read} read)"
          + (f"; {synced.note}" if synced.note else "") + ".", file=sys.stderr)
    return build_report(engine, period)


def cmd_analytics(args) -> int:
    from shop.settings import shop_settings

    try:
        report = _cli_report(args)
    except AnalyticsError as error:
        print(f"analytics: {error}", file=sys.stderr)
        return 1
    print(format_report(report, shop_settings().currency_symbol))
    if args.csv:
        written = write_csv_tables(report, Path(args.csv))
        print(f"\nWrote {len(written)} CSV tables to {args.csv}: " + ", ".join(p.name for p in written))
    return 0


def cmd_unanswered(args) -> int:
    try:
        report = _cli_report(args)
    except AnalyticsError as error:
        print(f"unanswered: {error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(unanswered_nlu_stub(report), encoding="utf-8")
    print(f"Wrote {len(report.unanswered)} unanswered messages to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
