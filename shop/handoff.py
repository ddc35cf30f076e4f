"""Handing a chat over to a person: requests, the agents who take them, tickets, ratings.

A conversation goes bot -> waiting (a shopper asked, or the bot gave up) -> active (an agent
claimed it) -> resolved (the agent handed it back), and the shopper may then rate the help.
When no agent is on duty, or nobody claims a waiting request in time, the request becomes
`unanswered` and the shopper leaves an email and a summary: a ticket for the next working day.

Support hours, the wait and the agents' logins come from the environment (see `support_settings`
and `agents_from_env`); passwords are stored as scrypt hashes (`python -m shop.handoff
hash-password`). Nothing here knows about Rasa: the console and the chat actions both call it.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Dict, List, Mapping, Optional, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import JSON, Column, DateTime, Integer, String, select, update
from sqlalchemy.orm import Session

from shop.carts import CartError, normalise_email, utc_naive
from shop.models import Base, HandoffTicket

# Why a chat went to a person: the shopper asked, complained, was misunderstood twice in a row, had a
# payment go wrong, wrote in strong frustration (shop.frustration), or is a hot sales lead (shop.leads).
REASONS = ("talk_to_human", "complaint", "repeated_fallback", "payment_problem", "frustration", "hot_lead")
OPEN_STATUSES = ("waiting", "active")
STATUSES = ("waiting", "active", "resolved", "unanswered")
SUMMARY_MAX = 2000
MESSAGE_MAX = 2000
# shop.models.HandoffTicket rows with this status wait for the team's follow-up by email.
TICKET_OPEN = "ticket"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HandoffRequest(Base):
    __tablename__ = "handoff_requests"
    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)  # Rasa's sender id
    reason = Column(String(40), nullable=False)
    status = Column(String(20), nullable=False, default="waiting", index=True)
    agent = Column(String(80), nullable=True)  # who claimed it
    context = Column(JSON, nullable=False, default=dict)  # what the bot knew when it handed over
    created_at = Column(DateTime, nullable=False)
    claimed_at = Column(DateTime, nullable=True)
    resolved_at = Column(DateTime, nullable=True)
    rating = Column(Integer, nullable=True)  # 1-5, the shopper's rating of the agent's help
    rated_at = Column(DateTime, nullable=True)


class HandoffError(ValueError):
    """A handoff step that is not allowed now; `message` is fit to show to the person who tried."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def ticket_number(ticket_id: int) -> str:
    return f"HT-{ticket_id:06d}"


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SupportSettings:
    opens: time
    closes: time  # time(0) with opens == time(0) means around the clock
    days: frozenset  # weekday numbers, Monday = 0
    zone: ZoneInfo
    wait_seconds: int

    def is_open(self, now: Optional[datetime] = None) -> bool:
        local = _aware(now).astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        if self.opens == self.closes:
            return True
        return self.opens <= local.time() < self.closes

    def next_opening(self, now: Optional[datetime] = None) -> datetime:
        """When agents are next on duty, in the support time zone (now itself when open)."""
        local = _aware(now).astimezone(self.zone)
        if self.is_open(local):
            return local
        for days_ahead in range(0, 8):
            day = (local + timedelta(days=days_ahead)).date()
            start = datetime.combine(day, self.opens, tzinfo=self.zone)
            if day.weekday() in self.days and start > local:
                return start
        raise HandoffError("no_hours", "No support hours are configured.")

    def hours_text(self) -> str:
        days = [DAY_NAMES[d].capitalize() for d in sorted(self.days)]
        span = "all day" if self.opens == self.closes else f"{self.opens:%H:%M}-{self.closes:%H:%M}"
        return f"{_day_ranges(days)} {span} ({self.zone.key})"


def _aware(now: Optional[datetime]) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _day_ranges(days: List[str]) -> str:
    if len(days) > 2 and [DAY_NAMES.index(d.lower()) for d in days] == list(
            range(DAY_NAMES.index(days[0].lower()), DAY_NAMES.index(days[-1].lower()) + 1)):
        return f"{days[0]}-{days[-1]}"
    return ", ".join(days)


def _parse_days(raw: str) -> frozenset:
    days = set()
    for part in raw.lower().replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise HandoffError("bad_days", f"SHOP_SUPPORT_DAYS: unknown day in {raw!r} (use e.g. mon-fri,sat)")
        start, end = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        days.update(range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)])
    if not days:
        raise HandoffError("bad_days", "SHOP_SUPPORT_DAYS names no day")
    return frozenset(days)


def _parse_hours(raw: str) -> tuple:
    try:
        opens, closes = (part.strip() for part in raw.split("-"))
        parsed = [time(0) if value == "24:00" else time.fromisoformat(value) for value in (opens, closes)]
    except ValueError:
        raise HandoffError("bad_hours", f"SHOP_SUPPORT_HOURS must look like 09:00-18:00, got {raw!r}") from None
    return parsed[0], parsed[1]


def support_settings(environ: Optional[Mapping[str, str]] = None) -> SupportSettings:
    env = os.environ if environ is None else environ
    opens, closes = _parse_hours(env.get("SHOP_SUPPORT_HOURS", "09:00-18:00"))
    zone_name = env.get("SHOP_SUPPORT_TIMEZONE", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HandoffError("bad_zone", f"SHOP_SUPPORT_TIMEZONE: unknown time zone {zone_name!r}") from None
    raw_wait = env.get("SHOP_HANDOFF_WAIT_SECONDS", "180")
    try:
        wait = int(raw_wait)
    except ValueError:
        raise HandoffError("bad_wait", f"SHOP_HANDOFF_WAIT_SECONDS must be whole seconds, got {raw_wait!r}") from None
    if wait < 1:
        raise HandoffError("bad_wait", "SHOP_HANDOFF_WAIT_SECONDS must be at least 1")
    return SupportSettings(opens, closes, _parse_days(env.get("SHOP_SUPPORT_DAYS", "mon-fri")), zone, wait)


# ----------------------------------------------------------------------------- agents and passwords

_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def hash_password(password: str, salt: Optional[bytes] = None) -> str:
    """'scrypt$<salt>$<hash>' (base64); never store or log the password itself."""
    if not password:
        raise HandoffError("empty_password", "The password must not be empty.")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def agents_from_env(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """{name: password hash} from SHOP_AGENTS ("alice:scrypt$..,bob:scrypt$..") or SHOP_AGENTS_FILE (a line each)."""
    env = os.environ if environ is None else environ
    entries: List[str] = [e for e in env.get("SHOP_AGENTS", "").split(",") if e.strip()]
    path = env.get("SHOP_AGENTS_FILE", "")
    if path:
        with open(path, encoding="utf-8") as lines:
            entries += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    agents = {}
    for entry in entries:
        name, sep, stored = entry.strip().partition(":")
        if not sep or not name.strip() or not stored.startswith("scrypt$"):
            raise HandoffError("bad_agent", f"agent entries look like name:scrypt$salt$hash, got {name.strip()!r}")
        agents[name.strip()] = stored.strip()
    return agents


DEFAULT_RELAY_TOKEN = "handoff-relay-development-only"


def relay_token(environ: Optional[Mapping[str, str]] = None) -> str:
    """What the agent console shows the chat channel to post agents' messages (HANDOFF_RELAY_TOKEN)."""
    env = os.environ if environ is None else environ
    return env.get("HANDOFF_RELAY_TOKEN") or DEFAULT_RELAY_TOKEN


def authenticate(agents: Mapping[str, str], name: str, password: str) -> bool:
    stored = agents.get(name)
    if stored is None:
        # Same work for unknown names, so timing does not tell which agent names exist.
        verify_password(password, hash_password("unknown-agent-placeholder"))
        return False
    return verify_password(password, stored)


# ----------------------------------------------------------------------------- the state machine


def request_handoff(session: Session, conversation_id: str, reason: str, context: Optional[dict] = None,
                    now: Optional[datetime] = None) -> HandoffRequest:
    """The open request of this conversation, or a new waiting one: asking twice does not queue twice."""
    if reason not in REASONS:
        raise HandoffError("bad_reason", f"unknown handoff reason {reason!r}")
    existing = open_handoff(session, conversation_id)
    if existing is not None:
        return existing
    handoff = HandoffRequest(conversation_id=conversation_id, reason=reason, status="waiting",
                             context=context or {}, created_at=utc_naive(now))
    session.add(handoff)
    session.flush()
    return handoff


def record_unanswered(session: Session, conversation_id: str, reason: str, context: Optional[dict] = None,
                      now: Optional[datetime] = None) -> HandoffRequest:
    """A request made while nobody is on duty: kept (the reason counts) but never queued."""
    handoff = request_handoff(session, conversation_id, reason, context, now)
    handoff.status = "unanswered"
    return handoff


def open_handoff(session: Session, conversation_id: str) -> Optional[HandoffRequest]:
    return session.execute(
        select(HandoffRequest)
        .where(HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN_STATUSES))
        .order_by(HandoffRequest.id.desc())
    ).scalars().first()


def get_handoff(session: Session, handoff_id: int) -> HandoffRequest:
    handoff = session.get(HandoffRequest, handoff_id)
    if handoff is None:
        raise HandoffError("not_found", "There is no such conversation in the handoff queue.")
    return handoff


def claim(session: Session, handoff_id: int, agent: str, now: Optional[datetime] = None) -> HandoffRequest:
    """Waiting -> active for this agent; a single conditional UPDATE, so two agents cannot both win."""
    claimed = session.execute(
        update(HandoffRequest)
        .where(HandoffRequest.id == handoff_id, HandoffRequest.status == "waiting")
        .values(status="active", agent=agent, claimed_at=utc_naive(now))
        .execution_options(synchronize_session=False)
    ).rowcount
    handoff = get_handoff(session, handoff_id)
    session.refresh(handoff)
    if not claimed:
        owner = f" by {handoff.agent}" if handoff.agent else ""
        raise HandoffError("not_waiting", f"This conversation is already {handoff.status}{owner}.")
    return handoff


def release(session: Session, handoff_id: int, agent: str) -> HandoffRequest:
    """Undo a claim the chat server could not act on, so another agent can take the chat."""
    handoff = owned_active(session, handoff_id, agent)
    handoff.status, handoff.agent, handoff.claimed_at = "waiting", None, None
    return handoff


def owned_active(session: Session, handoff_id: int, agent: str) -> HandoffRequest:
    """The handoff if `agent` is the one talking in it now; otherwise HandoffError."""
    handoff = get_handoff(session, handoff_id)
    if handoff.status != "active" or handoff.agent != agent:
        raise HandoffError("not_yours", "You can only write in conversations you have claimed and not yet resolved.")
    return handoff


def resolve(session: Session, handoff_id: int, agent: str, now: Optional[datetime] = None) -> HandoffRequest:
    handoff = owned_active(session, handoff_id, agent)
    handoff.status, handoff.resolved_at = "resolved", utc_naive(now)
    return handoff


def expire_unclaimed(session: Session, wait_seconds: int, now: Optional[datetime] = None) -> List[HandoffRequest]:
    """Waiting requests nobody claimed within the wait become unanswered; returns them to tell the shoppers."""
    deadline = utc_naive(now) - timedelta(seconds=wait_seconds)
    expired = session.execute(
        select(HandoffRequest).where(HandoffRequest.status == "waiting", HandoffRequest.created_at <= deadline)
    ).scalars().all()
    for handoff in expired:
        handoff.status = "unanswered"
    return list(expired)


def parse_rating(value: object) -> Optional[int]:
    text = str(value if value is not None else "").strip()
    for candidate in (text, text.split("/")[0], text.split(" ")[0]):
        if candidate.isdigit() and 1 <= int(candidate) <= 5:
            return int(candidate)
    return None


def record_rating(session: Session, conversation_id: str, rating: object,
                  now: Optional[datetime] = None) -> HandoffRequest:
    """Rates the agent of the conversation's latest resolved, unrated handoff."""
    stars = parse_rating(rating)
    if stars is None:
        raise HandoffError("bad_rating", "Please rate with a number from 1 (poor) to 5 (excellent).")
    handoff = session.execute(
        select(HandoffRequest)
        .where(HandoffRequest.conversation_id == conversation_id, HandoffRequest.status == "resolved",
               HandoffRequest.rating.is_(None))
        .order_by(HandoffRequest.id.desc())
    ).scalars().first()
    if handoff is None:
        raise HandoffError("nothing_to_rate", "There is no conversation with one of our team left to rate.")
    handoff.rating, handoff.rated_at = stars, utc_naive(now)
    return handoff


def create_ticket(session: Session, conversation_id: str, email: str, summary: str, reason: str,
                  now: Optional[datetime] = None) -> HandoffTicket:
    try:
        address = normalise_email(email)
    except CartError as error:
        raise HandoffError("bad_email", error.message) from None
    text = (summary or "").strip()
    if len(text) < 3:
        raise HandoffError("bad_summary", "Please describe the problem in a few words.")
    if reason not in REASONS:
        raise HandoffError("bad_reason", f"unknown handoff reason {reason!r}")
    # The number is derived from the id, which exists only once the row is written.
    ticket = HandoffTicket(number=f"pending-{secrets.token_hex(6)}", conversation_id=conversation_id,
                           reason=reason, status=TICKET_OPEN, contact=address, summary=text[:SUMMARY_MAX],
                           created_at=utc_naive(now), updated_at=utc_naive(now))
    session.add(ticket)
    session.flush()
    ticket.number = ticket_number(ticket.id)
    session.flush()
    return ticket


def handoffs_by_status(session: Session, statuses: Sequence[str], limit: int = 100) -> List[HandoffRequest]:
    return list(session.execute(
        select(HandoffRequest).where(HandoffRequest.status.in_(statuses))
        .order_by(HandoffRequest.created_at.desc(), HandoffRequest.id.desc()).limit(limit)
    ).scalars())


def open_tickets(session: Session, limit: int = 100) -> List[HandoffTicket]:
    return list(session.execute(
        select(HandoffTicket).where(HandoffTicket.status == TICKET_OPEN)
        .order_by(HandoffTicket.id.desc()).limit(limit)
    ).scalars())


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m shop.handoff hash-password [name]`: prints a SHOP_AGENTS entry for an agent."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "hash-password":
        print("usage: python -m shop.handoff hash-password [agent-name]", file=sys.stderr)
        return 2
    name = args[1] if len(args) > 1 else input("agent name: ").strip()
    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        print("the passwords differ", file=sys.stderr)
        return 1
    print(f"{name}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
