"""The handoff state machine, support hours, tickets and agent passwords (shop/handoff.py)."""
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from shop.db import session_scope
from shop.handoff import (
    HandoffError,
    HandoffRequest,
    agents_from_env,
    authenticate,
    claim,
    create_ticket,
    expire_unclaimed,
    hash_password,
    open_tickets,
    record_rating,
    record_unanswered,
    release,
    request_handoff,
    resolve,
    support_settings,
    verify_password,
)
from shop.models import HandoffTicket
from tests.unit.conftest import REPO_ROOT

T0 = datetime(2024, 6, 17, 10, 0, 0)  # a Monday, naive UTC like the shop stores


def status_of(engine, handoff_id):
    with session_scope(engine) as session:
        handoff = session.get(HandoffRequest, handoff_id)
        return handoff.status, handoff.agent


def new_request(engine, conversation="chat-1", reason="talk_to_human", now=T0):
    with session_scope(engine) as session:
        return request_handoff(session, conversation, reason, {"category": "sneakers"}, now=now).id


def test_a_request_waits_and_asking_again_does_not_queue_twice(engine):
    first = new_request(engine)
    second = new_request(engine, reason="complaint")

    assert first == second
    with session_scope(engine) as session:
        handoff = session.get(HandoffRequest, first)
        assert (handoff.status, handoff.reason, handoff.context) == ("waiting", "talk_to_human", {"category": "sneakers"})
        assert session.scalar(select(func.count()).select_from(HandoffRequest)) == 1


def test_bot_to_waiting_to_agent_to_resolved(engine):
    handoff_id = new_request(engine)
    with session_scope(engine) as session:
        claim(session, handoff_id, "alice", now=T0 + timedelta(seconds=30))
    assert status_of(engine, handoff_id) == ("active", "alice")

    with session_scope(engine) as session:
        resolve(session, handoff_id, "alice", now=T0 + timedelta(minutes=5))
    with session_scope(engine) as session:
        handoff = session.get(HandoffRequest, handoff_id)
        assert handoff.status == "resolved"
        assert handoff.resolved_at - handoff.claimed_at == timedelta(minutes=4, seconds=30)

    # A new request of the same conversation after the hand-back is a new entry in the queue.
    assert new_request(engine, now=T0 + timedelta(hours=1)) != handoff_id


def test_a_second_agent_cannot_claim_or_resolve_someone_elses_chat(engine):
    handoff_id = new_request(engine)
    with session_scope(engine) as session:
        claim(session, handoff_id, "alice")

    with pytest.raises(HandoffError, match="already active by alice"):
        with session_scope(engine) as session:
            claim(session, handoff_id, "bob")
    with pytest.raises(HandoffError) as refused:
        with session_scope(engine) as session:
            resolve(session, handoff_id, "bob")
    assert refused.value.code == "not_yours"
    assert status_of(engine, handoff_id) == ("active", "alice")


def test_a_released_claim_goes_back_to_the_queue(engine):
    handoff_id = new_request(engine)
    with session_scope(engine) as session:
        claim(session, handoff_id, "alice")
    with session_scope(engine) as session:
        release(session, handoff_id, "alice")
    assert status_of(engine, handoff_id) == ("waiting", None)


def test_requests_nobody_claims_in_time_become_unanswered(engine):
    late = new_request(engine, "chat-late", now=T0)
    fresh = new_request(engine, "chat-fresh", now=T0 + timedelta(seconds=50))
    taken = new_request(engine, "chat-taken", now=T0)
    with session_scope(engine) as session:
        claim(session, taken, "alice")

    with session_scope(engine) as session:
        assert expire_unclaimed(session, 60, now=T0 + timedelta(seconds=59)) == []
    with session_scope(engine) as session:
        expired = [h.conversation_id for h in expire_unclaimed(session, 60, now=T0 + timedelta(seconds=60))]

    assert expired == ["chat-late"]
    assert status_of(engine, late)[0] == "unanswered"
    assert status_of(engine, fresh)[0] == "waiting"
    assert status_of(engine, taken)[0] == "active"


def test_a_rating_is_recorded_with_the_agent_once(engine):
    handoff_id = new_request(engine)
    with session_scope(engine) as session:
        claim(session, handoff_id, "alice")
        resolve(session, handoff_id, "alice")

    with pytest.raises(HandoffError, match="from 1"):
        with session_scope(engine) as session:
            record_rating(session, "chat-1", "7")
    with session_scope(engine) as session:
        assert session.get(HandoffRequest, handoff_id).rating is None

    with session_scope(engine) as session:
        rated = record_rating(session, "chat-1", "4/5")
        assert (rated.agent, rated.rating) == ("alice", 4)
    with pytest.raises(HandoffError) as again:
        with session_scope(engine) as session:
            record_rating(session, "chat-1", "5")
    assert again.value.code == "nothing_to_rate"
    with session_scope(engine) as session:
        assert session.get(HandoffRequest, handoff_id).rating == 4


def test_a_ticket_gets_a_number_and_keeps_the_shoppers_message(engine):
    with session_scope(engine) as session:
        record_unanswered(session, "chat-9", "complaint")
        first = create_ticket(session, "chat-9", " Sam@Example.COM ", "I was charged twice", "complaint")
        second = create_ticket(session, "chat-10", "kim@example.com", "Where is my parcel?", "talk_to_human")
        numbers = (first.number, second.number)

    assert numbers == ("HT-000001", "HT-000002")
    with session_scope(engine) as session:
        tickets = open_tickets(session)
        assert [(t.number, t.contact, t.summary) for t in tickets] == [
            ("HT-000002", "kim@example.com", "Where is my parcel?"),
            ("HT-000001", "sam@example.com", "I was charged twice"),
        ]
        assert session.scalar(select(HandoffRequest.status).where(HandoffRequest.conversation_id == "chat-9")) \
            == "unanswered"


@pytest.mark.parametrize("email, summary, code", [
    ("not an email", "I was charged twice", "bad_email"),
    ("sam@example.com", "  ", "bad_summary"),
])
def test_a_ticket_with_bad_details_is_refused_and_nothing_is_written(engine, email, summary, code):
    with pytest.raises(HandoffError) as refused:
        with session_scope(engine) as session:
            create_ticket(session, "chat-9", email, summary, "complaint")
    assert refused.value.code == code
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(HandoffTicket)) == 0


# ----------------------------------------------------------------------------- hours (no database)

LONDON_HOURS = {"SHOP_SUPPORT_HOURS": "09:00-18:00", "SHOP_SUPPORT_DAYS": "mon-fri",
                "SHOP_SUPPORT_TIMEZONE": "Europe/London", "SHOP_HANDOFF_WAIT_SECONDS": "90"}


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_support_hours_are_read_in_the_configured_time_zone():
    hours = support_settings(LONDON_HOURS)
    # British Summer Time: 08:30 UTC is 09:30 in London.
    assert hours.is_open(utc(2024, 6, 17, 8, 30))
    assert not hours.is_open(utc(2024, 6, 17, 7, 59))
    assert not hours.is_open(utc(2024, 6, 17, 17, 0))  # 18:00 London: closed
    assert not hours.is_open(utc(2024, 6, 15, 12, 0))  # Saturday
    assert hours.wait_seconds == 90
    assert hours.hours_text() == "Mon-Fri 09:00-18:00 (Europe/London)"


def test_the_next_opening_after_friday_evening_is_monday_morning():
    hours = support_settings(LONDON_HOURS)
    opening = hours.next_opening(utc(2024, 6, 21, 19, 0))
    assert (opening.strftime("%A %H:%M"), opening.date().isoformat()) == ("Monday 09:00", "2024-06-24")


def test_around_the_clock_every_day():
    hours = support_settings({"SHOP_SUPPORT_HOURS": "00:00-24:00", "SHOP_SUPPORT_DAYS": "mon-sun"})
    assert all(hours.is_open(utc(2024, 6, 15, hour)) for hour in range(24))


@pytest.mark.parametrize("setting, value, message", [
    ("SHOP_SUPPORT_HOURS", "9 to 5", "09:00-18:00"),
    ("SHOP_SUPPORT_DAYS", "mon-fry", "unknown day"),
    ("SHOP_SUPPORT_TIMEZONE", "Mars/Olympus", "unknown time zone"),
    ("SHOP_HANDOFF_WAIT_SECONDS", "soon", "whole seconds"),
])
def test_bad_hour_settings_say_what_is_wrong(setting, value, message):
    with pytest.raises(HandoffError, match=message):
        support_settings({**LONDON_HOURS, setting: value})


# ----------------------------------------------------------------------------- agents


def test_passwords_are_stored_salted_and_checked():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert stored != hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("Correct horse", stored)
    assert not verify_password("correct horse", "plain-text-password")


def test_agents_come_from_the_environment_or_a_file(tmp_path):
    alice, bob = hash_password("a-secret"), hash_password("b-secret")
    agents_file = tmp_path / "agents.txt"
    agents_file.write_text(f"# the late shift\nbob:{bob}\n")
    agents = agents_from_env({"SHOP_AGENTS": f"alice:{alice}", "SHOP_AGENTS_FILE": str(agents_file)})

    assert sorted(agents) == ["alice", "bob"]
    assert authenticate(agents, "alice", "a-secret")
    assert authenticate(agents, "bob", "b-secret")
    assert not authenticate(agents, "alice", "b-secret")
    assert not authenticate(agents, "mallory", "a-secret")


def test_a_plain_text_password_in_the_settings_is_refused():
    with pytest.raises(HandoffError, match="name:scrypt"):
        agents_from_env({"SHOP_AGENTS": "alice:hunter2"})


def test_the_cli_prints_an_agent_entry_for_the_settings():
    result = subprocess.run([sys.executable, "-m", "shop.handoff", "hash-password", "alice"], input="s3cret!\ns3cret!\n",
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip().splitlines()[-1]
    assert "s3cret!" not in entry
    assert authenticate(agents_from_env({"SHOP_AGENTS": entry}), "alice", "s3cret!")
