"""Verification before order data: details or an emailed code (real SMTP), lockout and rate limits on a
clock the tests control, everything persisted in the database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shop.db import session_scope
from shop.mailer import SmtpMailer, SmtpSettings
from shop.models import Customer
from shop.orders import orders_for_customer
from shop.verification import (
    LOCKOUT,
    NotVerified,
    OneTimeCode,
    VerificationSession,
    end_verification,
    is_verified,
    lock_status,
    purge_expired,
    require_verified,
    send_code,
    verified_email,
    verify_by_order_details,
    verify_code,
)
from tests.unit.service_helpers import catalog, free_port, make_order, smtp_server, snapshot

T0 = datetime(2024, 6, 15, 12, 0)
ALEX = "alex.morgan@example.com"


@pytest.fixture
def shop(engine):
    with session_scope(engine) as session:
        v = catalog(session)
        alex = Customer(email=ALEX, first_name="Alex", last_name="Morgan", postcode="97205")
        session.add(alex)
        make_order(session, "SH-100001", [(v["tee"], 1)], email="Alex.Morgan@example.com", customer=alex,
                   postcode="97205", placed_at=datetime(2024, 6, 1))
        make_order(session, "SH-100002", [(v["tee"], 1)], email="sam@example.com", country="GB",
                   postcode="SW1A 1AA", city="London", placed_at=datetime(2024, 6, 2))
        make_order(session, "SH-100003", [(v["sneakers42"], 1)], email=ALEX, customer=alex,
                   placed_at=datetime(2024, 6, 10))
    return engine


@pytest.fixture
def inbox():
    with smtp_server() as server:
        yield server


@pytest.fixture
def mailer(inbox):
    return SmtpMailer(SmtpSettings(host=inbox.host, port=inbox.port, sender="Northwind <no-reply@shop.test>",
                                   timeout=5.0))


def details(engine, conversation, number, detail, now=T0):
    with session_scope(engine) as session:
        return verify_by_order_details(session, conversation, number, detail, now)


def code(engine, conversation, value, now=T0):
    with session_scope(engine) as session:
        return verify_code(session, conversation, value, now)


def request_code(engine, conversation, email, mailer, now=T0):
    with session_scope(engine) as session:
        return send_code(session, conversation, email, mailer, now)


def email_of(engine, conversation, now=T0):
    with session_scope(engine) as session:
        return verified_email(session, conversation, now)


# -- order details -------------------------------------------------------------------------------

def test_order_number_and_email_verify_the_conversation(shop):
    assert email_of(shop, "conv-1") is None
    result = details(shop, "conv-1", "#sh100001", "  ALEX.Morgan@Example.COM ")
    assert (result.ok, result.code, result.email) == (True, "verified", ALEX)
    assert email_of(shop, "conv-1", T0 + timedelta(hours=2)) == ALEX
    with session_scope(shop) as session:  # later: "my last order", "all my orders"
        email = require_verified(session, "conv-1", T0 + timedelta(minutes=5))
        assert [o.number for o in orders_for_customer(session, email)] == ["SH-100003", "SH-100001"]
        assert [o.number for o in orders_for_customer(session, email, limit=1)] == ["SH-100003"]
    assert email_of(shop, "someone-else") is None


@pytest.mark.parametrize("number, postcode", [("SH-100001", "97205"), ("SH-100001", "97205-1234"),
                                              ("SH-100002", "sw1a1aa"), ("SH-100002", " SW1A-1AA ")])
def test_order_number_and_postcode_verify(shop, number, postcode):
    result = details(shop, "conv-1", number, postcode)
    assert result.verified


@pytest.mark.parametrize("number, detail", [("SH-100999", ALEX), ("SH-100001", "mallory@example.com"),
                                            ("SH-100001", "97206"), ("SH-100002", ALEX), ("SH-100001", "972")])
def test_an_unknown_order_and_a_wrong_detail_get_the_same_reply(shop, number, detail):
    result = details(shop, "conv-probe", number, detail)
    reference = details(shop, "conv-reference", "SH-199999", "nobody@example.com")
    assert result == reference
    assert (result.ok, result.code, result.attempts_left) == (False, "details_mismatch", 4)
    assert "SH-1" not in result.message
    assert email_of(shop, "conv-probe") is None


def test_malformed_numbers_and_missing_details_do_not_count(shop):
    before = snapshot(shop)
    assert details(shop, "conv-new", "order twelve", ALEX).code == "invalid_order_number"
    assert code(shop, "conv-new", "12").code == "invalid_code_format"
    assert code(shop, "conv-new", "123456").code == "no_active_code"
    assert snapshot(shop) == before  # refused before anything was tried: nothing recorded
    for _ in range(6):
        assert details(shop, "conv-1", "SH-12", ALEX).code == "invalid_order_number"
        assert details(shop, "conv-1", "SH-100001", "  ").code == "missing_detail"
    assert details(shop, "conv-1", "SH-100001", ALEX).verified


def test_five_failures_lock_the_conversation_for_15_minutes_across_restarts(shop):
    for minute in range(4):
        result = details(shop, "conv-1", "SH-100001", "wrong@example.com", T0 + timedelta(minutes=minute))
        assert (result.code, result.attempts_left) == ("details_mismatch", 4 - minute)
    locked_at = T0 + timedelta(minutes=4)
    fifth = details(shop, "conv-1", "SH-100001", "wrong@example.com", locked_at)
    assert (fifth.code, fifth.retry_after_seconds) == ("locked", 15 * 60)
    assert "try again in 15 minutes" in fifth.message

    shop.dispose()  # a restart: nothing but the database remembers
    before = snapshot(shop)
    still = details(shop, "conv-1", "SH-100001", ALEX, locked_at + timedelta(minutes=14))
    assert (still.ok, still.code) == (False, "locked") and "1 minute." in still.message
    assert snapshot(shop) == before  # a refused attempt while locked changes nothing
    assert email_of(shop, "conv-1") is None
    assert details(shop, "conv-2", "SH-100001", ALEX, locked_at).verified  # other conversations are not locked

    after = details(shop, "conv-1", "SH-100001", ALEX, locked_at + LOCKOUT)
    assert after.verified and email_of(shop, "conv-1", locked_at + LOCKOUT) == ALEX


def test_lock_status_tells_a_chat_to_stop_asking_until_the_lock_ends(shop):
    with session_scope(shop) as session:
        assert lock_status(session, "conv-1", T0) is None  # never seen
    for minute in range(5):
        details(shop, "conv-1", "SH-100001", "wrong@example.com", T0 + timedelta(minutes=minute))
    with session_scope(shop) as session:
        locked = lock_status(session, "conv-1", T0 + timedelta(minutes=5))
        assert (locked.code, locked.retry_after_seconds) == ("locked", 14 * 60)
        assert lock_status(session, "conv-1", T0 + timedelta(minutes=4) + LOCKOUT) is None
        assert lock_status(session, "conv-2", T0 + timedelta(minutes=5)) is None


def test_a_success_resets_the_failure_count(shop):
    for minute in range(4):
        details(shop, "conv-1", "SH-100001", "wrong@example.com", T0 + timedelta(minutes=minute))
    assert details(shop, "conv-1", "SH-100001", ALEX, T0 + timedelta(minutes=5)).verified
    result = details(shop, "conv-1", "SH-100001", "wrong@example.com", T0 + timedelta(minutes=6))
    assert (result.code, result.attempts_left) == ("details_mismatch", 4)


def test_many_conversations_guessing_one_order_are_rate_limited_but_the_owner_gets_in_by_code(shop, inbox, mailer):
    for i in range(10):
        details(shop, f"bot-{i}", "SH-100001", f"guess{i}@example.com", T0 + timedelta(minutes=i))
        details(shop, f"bot-{i}", "SH-100999", f"guess{i}@example.com", T0 + timedelta(minutes=i))
    when = T0 + timedelta(minutes=20)
    limited = details(shop, "bot-new", "SH-100001", ALEX, when)  # even the right email is refused now
    assert (limited.ok, limited.code) == (False, "order_rate_limited")
    assert "email a one-time code" in limited.message
    # an order number that does not exist is limited in exactly the same way: nothing leaks
    assert details(shop, "bot-other", "SH-100999", ALEX, when) == limited
    assert details(shop, "conv-sam", "SH-100002", "sam@example.com", when).verified  # other orders unaffected

    # the real owner, in their own conversation, is not blocked on the emailed-code path
    sent = request_code(shop, "owner", ALEX, mailer, when)
    assert (sent.ok, sent.code) == (True, "code_sent")
    assert code(shop, "owner", inbox.codes()[-1], when + timedelta(minutes=2)).verified
    assert email_of(shop, "owner", when + timedelta(minutes=2)) == ALEX

    # an hour after the guesses, order details work again
    assert details(shop, "owner-later", "SH-100001", ALEX, T0 + timedelta(minutes=70)).verified


# -- one-time codes (a real SMTP server) ---------------------------------------------------------

def test_a_code_is_emailed_to_the_address_on_file_and_verifies(shop, inbox, mailer):
    sent = request_code(shop, "conv-1", "  ALEX.MORGAN@example.COM", mailer)
    assert sent.code == "code_sent" and "valid for 10 minutes" in sent.message
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message.rcpt_tos == [ALEX]
    assert message.message["Subject"] == "Your Northwind Outfitters verification code"
    [the_code] = inbox.codes()
    assert len(the_code) == 6 and the_code.isdigit()
    assert "expires in 10 minutes" in message.body

    rows = snapshot(shop)
    assert the_code not in repr(rows)  # stored hashed, never in clear
    with session_scope(shop) as session:
        stored = session.execute(select(OneTimeCode)).scalar_one()
        assert (stored.email, stored.expires_at, stored.attempts) == (ALEX, T0 + timedelta(minutes=10), 0)
        assert len(stored.code_hash) == 64 and len(stored.salt) == 32

    typed = f"{the_code[:3]} {the_code[3:]}"
    result = code(shop, "conv-1", typed, T0 + timedelta(minutes=9))
    assert (result.ok, result.code, result.email) == (True, "verified", ALEX)
    assert email_of(shop, "conv-1", T0 + timedelta(minutes=9)) == ALEX
    assert code(shop, "conv-1", the_code, T0 + timedelta(minutes=9)).code == "no_active_code"  # used once only


def test_an_unknown_email_gets_the_same_reply_and_no_mail(shop, inbox, mailer):
    known = request_code(shop, "conv-1", ALEX, mailer)
    before = len(inbox.messages)
    unknown = request_code(shop, "conv-2", "stranger@example.com", mailer)
    assert unknown == known
    assert len(inbox.messages) == before
    with session_scope(shop) as session:
        assert session.execute(select(OneTimeCode.conversation_id)).scalars().all() == ["conv-1"]
    assert code(shop, "conv-2", "123456").code == "no_active_code"


def test_an_order_email_without_an_account_also_gets_a_code(shop, inbox, mailer):
    assert request_code(shop, "conv-1", "SAM@example.com", mailer).code == "code_sent"
    assert inbox.messages[0].rcpt_tos == ["sam@example.com"]
    assert code(shop, "conv-1", inbox.codes()[0]).email == "sam@example.com"


def test_codes_expire_after_10_minutes(shop, inbox, mailer):
    request_code(shop, "conv-1", ALEX, mailer)
    result = code(shop, "conv-1", inbox.codes()[0], T0 + timedelta(minutes=10))
    assert (result.ok, result.code) == (False, "no_active_code")


def test_a_code_belongs_to_its_conversation(shop, inbox, mailer):
    request_code(shop, "conv-1", ALEX, mailer)
    assert code(shop, "conv-2", inbox.codes()[0]).code == "no_active_code"
    assert email_of(shop, "conv-2") is None


def test_five_wrong_codes_burn_the_code_and_lock(shop, inbox, mailer, monkeypatch):
    monkeypatch.setattr("shop.verification.secrets.randbelow", lambda n: 424242)
    request_code(shop, "conv-1", ALEX, mailer)
    assert inbox.codes() == ["424242"]
    for attempt in range(4):
        result = code(shop, "conv-1", "000000", T0 + timedelta(minutes=1))
        assert (result.code, result.attempts_left) == ("wrong_code", 4 - attempt)
    fifth = code(shop, "conv-1", "000000", T0 + timedelta(minutes=1))
    assert fifth.code == "locked"
    assert code(shop, "conv-1", "424242", T0 + timedelta(minutes=2)).code == "locked"
    after = code(shop, "conv-1", "424242", T0 + timedelta(minutes=1) + LOCKOUT)
    assert after.code == "no_active_code"  # the burnt code stays dead
    assert email_of(shop, "conv-1", T0 + timedelta(minutes=30)) is None


def test_a_new_code_replaces_the_previous_one(shop, inbox, mailer, monkeypatch):
    draws = iter([111111, 222222])
    monkeypatch.setattr("shop.verification.secrets.randbelow", lambda n: next(draws))
    request_code(shop, "conv-1", ALEX, mailer)
    request_code(shop, "conv-1", ALEX, mailer, T0 + timedelta(minutes=1))
    first, second = inbox.codes()
    assert (first, second) == ("111111", "222222")
    assert code(shop, "conv-1", first, T0 + timedelta(minutes=2)).code == "wrong_code"
    assert code(shop, "conv-1", second, T0 + timedelta(minutes=2)).verified


def test_code_requests_are_throttled_without_revealing_anything(shop, inbox, mailer):
    for i in range(3):
        assert request_code(shop, "conv-1", ALEX, mailer, T0 + timedelta(minutes=i)).code == "code_sent"
    throttled = request_code(shop, "conv-1", ALEX, mailer, T0 + timedelta(minutes=3))
    assert throttled.code == "send_throttled"
    assert len(inbox.messages) == 3
    assert request_code(shop, "conv-1", ALEX, mailer, T0 + timedelta(minutes=16)).code == "code_sent"
    # per address, across conversations, the same for a known and an unknown address
    for i in range(5):
        request_code(shop, f"c{i}", "sam@example.com", mailer, T0 + timedelta(minutes=20 + i))
        request_code(shop, f"d{i}", "ghost@example.com", mailer, T0 + timedelta(minutes=20 + i))
    known = request_code(shop, "c-new", "sam@example.com", mailer, T0 + timedelta(minutes=30))
    unknown = request_code(shop, "d-new", "ghost@example.com", mailer, T0 + timedelta(minutes=30))
    assert known == unknown and known.code == "send_throttled"


def test_a_mail_outage_is_reported_honestly_for_known_and_unknown_addresses(shop):
    down = SmtpMailer(SmtpSettings(host="127.0.0.1", port=free_port(), sender="x@shop.test", timeout=2.0))
    known = request_code(shop, "conv-1", ALEX, down)
    unknown = request_code(shop, "conv-2", "ghost@example.com", down)
    assert known == unknown
    assert (known.ok, known.code) == (False, "mail_failed")
    assert known.message == "I couldn't send the email just now. Please try again in a few minutes."
    with session_scope(shop) as session:
        assert session.execute(select(OneTimeCode)).first() is None  # no code that never reached anyone


def test_bad_email_and_bad_code_formats_are_explained_and_not_counted(shop, inbox, mailer):
    assert request_code(shop, "conv-1", "alex at example", mailer).code == "invalid_email"
    assert inbox.messages == []
    request_code(shop, "conv-1", ALEX, mailer)
    for _ in range(6):
        assert code(shop, "conv-1", "12-34").code == "invalid_code_format"
    assert code(shop, "conv-1", inbox.codes()[0]).verified


# -- the verified conversation -------------------------------------------------------------------

def test_verification_lasts_for_the_conversation_and_can_end(shop):
    details(shop, "conv-1", "SH-100001", "97205")
    aware = (T0 + timedelta(hours=23)).replace(tzinfo=timezone.utc)
    with session_scope(shop) as session:
        assert is_verified(session, "conv-1", aware)
        assert not is_verified(session, "conv-1", T0 + timedelta(hours=25))
        with pytest.raises(NotVerified) as caught:
            require_verified(session, "conv-1", T0 + timedelta(hours=25))
        assert "confirm it's you" in caught.value.message
        end_verification(session, "conv-1")
    assert email_of(shop, "conv-1") is None
    with session_scope(shop) as session:
        state = session.get(VerificationSession, "conv-1")
        assert state.verified_via is None and state.failed_attempts == 0


def test_old_attempts_and_codes_can_be_purged(shop, inbox, mailer):
    details(shop, "conv-1", "SH-100001", "wrong@example.com")
    request_code(shop, "conv-1", ALEX, mailer)
    with session_scope(shop) as session:
        assert purge_expired(session, T0 + timedelta(hours=1)) == 0
        assert purge_expired(session, T0 + timedelta(days=3)) == 3  # 2 attempts (details, send) + 1 code
