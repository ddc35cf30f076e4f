"""Leads (shop/leads.py): reading answers, the BANT scoring rules, one lead per conversation, CSV export,
and delivery to a real local CRM webhook (down, slow, failing) with backoff on an injected clock."""
import csv
import hashlib
import hmac
import io
import json
import socket
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from shop.cli import main
from shop.db import create_schema, make_engine, session_scope
from shop.leads import (
    LeadAnswers,
    LeadError,
    authority_level,
    deliver_due_leads,
    export_leads_csv,
    find_email,
    is_skip,
    parse_budget,
    parse_phone,
    parse_quantity,
    record_callback,
    requeue_failed,
    score_lead,
    stage_thresholds,
    store_lead,
    timeline_days,
)
from shop.models import Lead

T0 = datetime(2024, 6, 17, 10, 0, 0)  # naive UTC, like the shop stores
TODAY = T0.date()
THRESHOLDS = (70, 40)
CONSENT = "Northwind's sales team may contact me at the address I gave."

HOT = LeadAnswers(email="dana@harbor.example", company="Harbor Logistics", role="Head of Operations",
                  quantity=200, budget_cents=1_500_000, timeline="within 3 weeks",
                  need="embroidered fleece jackets for our warehouse staff")
WARM = LeadAnswers(email="office@brightside.example", company="Brightside Dental", role="office manager",
                   quantity=30, budget_cents=300_000, timeline="next month", need="matching polo shirts for reception")
COLD = LeadAnswers(email="sam@example.com", quantity=12, need="t-shirts")


# ----------------------------------------------------------------------------- reading answers


@pytest.mark.parametrize("said, expected", [
    ("about 50", 50), ("50 people", 50), ("a team of 12", 12), ("50-100", 50), ("a dozen", 12), ("1,000", 1000),
    ("1.5k", 1500), ("twenty", 20), ("we are 35 in the office", 35),
])
def test_quantities_are_read_from_how_people_say_them(said, expected):
    assert parse_quantity(said) == expected


@pytest.mark.parametrize("said", ["lots", "loads of them", "0", "", "2,000,000"])
def test_a_quantity_without_a_sensible_number_gets_a_clear_prompt(said):
    with pytest.raises(LeadError) as refused:
        parse_quantity(said)
    assert refused.value.code == "invalid_quantity"
    assert "A number is enough, like 50" in refused.value.message


@pytest.mark.parametrize("said, quantity, cents", [
    ("$5k", None, 500_000), ("5000 dollars", None, 500_000), ("$5,000-$10,000", None, 500_000),
    ("between 5 and 10k", None, 500_000), ("10 grand", None, 1_000_000), ("€2.5k", None, 250_000),
    ("around 750", None, 75_000), ("$20 each", 50, 100_000), ("30 per person", 10, 30_000),
])
def test_budgets_are_read_in_cents(said, quantity, cents):
    assert parse_budget(said, quantity) == cents


@pytest.mark.parametrize("said", ["lots", "a fair bit", "whatever it takes", "$0"])
def test_a_budget_like_lots_is_asked_again_with_an_example(said):
    with pytest.raises(LeadError) as refused:
        parse_budget(said)
    assert refused.value.code == "invalid_budget"
    assert "like $5,000 or 5k" in refused.value.message and "skip" in refused.value.message


def test_a_per_person_budget_without_a_quantity_asks_for_the_total():
    with pytest.raises(LeadError) as refused:
        parse_budget("$25 per head")
    assert refused.value.code == "budget_per_unit"


def test_emails_are_found_in_a_sentence_and_bad_ones_refused():
    assert find_email("it's Dana.Lee@Harbor.example, thanks") == "dana.lee@harbor.example"
    for bad in ("dana at harbor dot com", "dana@harbor", "@harbor.example", ""):
        with pytest.raises(LeadError, match="like name@company.com"):
            find_email(bad)


def test_phone_numbers_need_seven_to_fifteen_digits():
    assert parse_phone("call me on +1 (503) 555-0142") == "+1 503 555 0142"
    assert parse_phone("020 7946 0958") == "020 7946 0958"
    for bad in ("555-01", "call me maybe", "1234567890123456"):
        with pytest.raises(LeadError, match="country or area code"):
            parse_phone(bad)


@pytest.mark.parametrize("said", ["skip", "Skip it", "no idea", "don't know", "rather not say", "n/a", "not sure yet"])
def test_skip_phrases(said):
    assert is_skip(said)


def test_answers_are_not_mistaken_for_skips():
    assert not any(is_skip(s) for s in ("Acme", "no logo, plain ones", "nobody knows us yet, we're new"))


@pytest.mark.parametrize("said, days", [
    ("asap", 7), ("within 3 weeks", 21), ("in a month", 30), ("next month", 60), ("in two months", 60),
    ("this quarter", 90), ("by September", 76), ("next year", 365), ("no rush", None), ("whenever", None),
])
def test_timelines_become_days_from_today(said, days):
    assert timeline_days(said, TODAY) == days


@pytest.mark.parametrize("role, level", [
    ("Head of Operations", "decides"), ("owner", "decides"), ("procurement", "decides"), ("CEO", "decides"),
    ("office manager", "influences"), ("team lead", "influences"), ("intern", "unknown"), ("", "unknown"),
])
def test_authority_from_the_role(role, level):
    assert authority_level(role) == level


# ----------------------------------------------------------------------------- the scoring rules


def test_a_decision_maker_with_budget_volume_need_and_a_near_date_is_hot():
    scored = score_lead(HOT, TODAY, THRESHOLDS)
    assert (scored.score, scored.stage) == (100, "hot")
    assert scored.reasons == [
        "a budget of $15,000.00",
        "you decide on the purchase (Head of Operations)",
        "200 units or people and a clear need",
        "needed within a month (within 3 weeks)",
    ]


def test_an_influencer_with_a_mid_budget_next_month_is_warm():
    scored = score_lead(WARM, TODAY, THRESHOLDS)
    # budget 20 + authority 12 + need 10 (30 people) + 10 (described) + timing 12 (within 90 days)
    assert (scored.score, scored.stage) == (64, "warm")
    assert scored.reasons[1] == "you have a say in the purchase (office manager)"
    assert scored.reasons[3] == "needed within three months (next month)"


def test_skipped_answers_score_nothing_and_say_so():
    scored = score_lead(COLD, TODAY, THRESHOLDS)
    assert (scored.score, scored.stage) == (5, "cold")
    assert scored.reasons == ["no budget given yet", "not known who decides on the purchase",
                              "12 units or people and the need not described yet", "no date yet"]


@pytest.mark.parametrize("cents, points", [(None, 0), (49_999, 0), (50_000, 10), (199_999, 10), (200_000, 20),
                                           (999_999, 20), (1_000_000, 30)])
def test_budget_points(cents, points):
    assert score_lead(LeadAnswers(budget_cents=cents), TODAY, THRESHOLDS).score == points


@pytest.mark.parametrize("quantity, points", [(None, 0), (9, 0), (10, 5), (24, 5), (25, 10), (99, 10), (100, 15)])
def test_quantity_points(quantity, points):
    assert score_lead(LeadAnswers(quantity=quantity), TODAY, THRESHOLDS).score == points


@pytest.mark.parametrize("timeline, points", [("tomorrow", 20), ("in 30 days", 20), ("in 31 days", 12),
                                              ("in 3 months", 12), ("in 4 months", 4), ("in 2 years", 0),
                                              ("someday", 0)])
def test_timing_points(timeline, points):
    assert score_lead(LeadAnswers(timeline=timeline), TODAY, THRESHOLDS).score == points


def test_the_stage_boundaries_are_the_thresholds():
    just_warm = LeadAnswers(role="owner", budget_cents=50_000, quantity=10)  # 25 + 10 + 5 = 40
    just_hot = LeadAnswers(role="owner", budget_cents=1_000_000, quantity=10, need="polo shirts with logo")  # 70
    assert [score_lead(a, TODAY, THRESHOLDS).stage for a in (just_warm, just_hot)] == ["warm", "hot"]
    assert score_lead(just_hot, TODAY, (71, 40)).stage == "warm"


def test_thresholds_come_from_the_environment():
    assert stage_thresholds({}) == (70, 40)
    assert stage_thresholds({"SHOP_LEAD_HOT_SCORE": "80", "SHOP_LEAD_WARM_SCORE": "50"}) == (80, 50)
    for bad in ({"SHOP_LEAD_HOT_SCORE": "lots"}, {"SHOP_LEAD_HOT_SCORE": "30", "SHOP_LEAD_WARM_SCORE": "50"}):
        with pytest.raises(LeadError):
            stage_thresholds(bad)


# ----------------------------------------------------------------------------- one lead per conversation


def store(engine, answers=HOT, conversation="chat-1", now=T0, consent=True):
    with session_scope(engine) as session:
        return store_lead(session, conversation, answers, consent, CONSENT, now=now, thresholds=THRESHOLDS)


def lead_rows(engine):
    with session_scope(engine) as session:
        return session.execute(select(Lead).order_by(Lead.id)).scalars().all()


def test_a_lead_is_stored_with_score_reasons_consent_and_its_conversation(engine):
    stored = store(engine)
    assert (stored.created, stored.changed, stored.stage, stored.score) == (True, True, "hot", 100)
    [lead] = lead_rows(engine)
    assert (lead.conversation_id, lead.source, lead.email, lead.company, lead.quantity, lead.budget_cents) == (
        "chat-1", "chat", "dana@harbor.example", "Harbor Logistics", 200, 1_500_000)
    assert lead.reasons == stored.reasons and len(lead.reasons) == 4
    assert (lead.consent, lead.consent_text, lead.consented_at) == (True, CONSENT, T0)
    assert (lead.crm_status, lead.crm_version, lead.crm_attempts, lead.crm_next_attempt_at) == ("pending", 1, 0, T0)


def test_submitting_the_same_answers_again_never_adds_a_second_lead(engine):
    first = store(engine)
    again = store(engine, now=T0 + timedelta(minutes=2))
    assert (again.id, again.created, again.changed) == (first.id, False, False)
    [lead] = lead_rows(engine)
    assert (lead.crm_version, lead.created_at) == (1, T0)


def test_changed_answers_update_the_same_lead_and_queue_the_new_version(engine):
    first = store(engine, answers=WARM)
    updated = store(engine, answers=HOT, now=T0 + timedelta(minutes=5))
    assert (updated.id, updated.created, updated.changed, updated.stage) == (first.id, False, True, "hot")
    [lead] = lead_rows(engine)
    assert (lead.company, lead.crm_version, lead.crm_status, lead.updated_at) == (
        "Harbor Logistics", 2, "pending", T0 + timedelta(minutes=5))


def test_other_conversations_get_their_own_leads(engine):
    store(engine, conversation="chat-1")
    store(engine, conversation="chat-2", answers=COLD)
    assert [(lead.conversation_id, lead.stage) for lead in lead_rows(engine)] == [("chat-1", "hot"), ("chat-2", "cold")]


def test_without_consent_or_with_a_bad_email_nothing_is_stored(engine):
    with pytest.raises(LeadError) as refused:
        store(engine, consent=False)
    assert refused.value.code == "no_consent"
    with pytest.raises(LeadError) as refused:
        store(engine, answers=LeadAnswers(email="dana at harbor", need="jackets"))
    assert refused.value.code == "invalid_email"
    assert lead_rows(engine) == []


def test_a_call_back_is_kept_on_the_lead_and_sent_to_the_crm_again(engine):
    store(engine)
    with session_scope(engine) as session:
        record_callback(session, "chat-1", "+44 20 7946 0958", now=T0 + timedelta(minutes=1))
    [lead] = lead_rows(engine)
    assert (lead.callback_phone, lead.callback_requested_at, lead.crm_version) == (
        "+44 20 7946 0958", T0 + timedelta(minutes=1), 2)
    with pytest.raises(LeadError) as refused:
        with session_scope(engine) as session:
            record_callback(session, "chat-without-lead", "+44 20 7946 0958")
    assert refused.value.code == "no_lead"


# ----------------------------------------------------------------------------- CSV export


def exported(engine, stage=None):
    out = io.StringIO()
    with session_scope(engine) as session:
        count = export_leads_csv(session, out, stage)
    return count, list(csv.DictReader(io.StringIO(out.getvalue())))


def test_the_csv_has_every_lead_with_stage_reasons_consent_and_source(engine):
    store(engine, conversation="chat-1")
    store(engine, conversation="chat-2", answers=COLD, now=T0 + timedelta(hours=1))
    count, rows = exported(engine)
    assert count == 2
    assert [(r["conversation_id"], r["stage"], r["score"], r["budget"]) for r in rows] == [
        ("chat-1", "hot", "100", "15000.00"), ("chat-2", "cold", "5", "")]
    assert rows[0]["reasons"].startswith("a budget of $15,000.00; you decide on the purchase")
    assert (rows[0]["consent"], rows[0]["consent_text"], rows[0]["source"], rows[0]["crm_status"]) == (
        "yes", CONSENT, "chat", "pending")
    assert exported(engine, "cold")[0] == 1


def test_shoppers_words_never_become_spreadsheet_formulas(engine):
    store(engine, answers=LeadAnswers(email="x@example.com", company='=HYPERLINK("http://evil.example")',
                                      need="-2+3 shirts", role="@admin"))
    _, [row] = exported(engine)
    assert (row["company"], row["need"], row["role"]) == ("'=HYPERLINK(\"http://evil.example\")", "'-2+3 shirts",
                                                          "'@admin")


# ----------------------------------------------------------------------------- a real CRM webhook


class CrmServer:
    """A real HTTP server on a free port (or `port`) answering with the statuses it is given (200 when none is left)."""

    def __init__(self, port: int = 0):
        self.received = []
        self.statuses = []
        self.hold = threading.Event()  # while not set with hold_requests on, requests hang (a slow CRM)
        self.hold_requests = False
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if crm.hold_requests:
                    crm.hold.wait(10)
                crm.received.append((dict(self.headers), json.loads(body), body))
                self.send_response(crm.statuses.pop(0) if crm.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm/leads"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm(monkeypatch):
    server = CrmServer()
    monkeypatch.setenv("SHOP_CRM_WEBHOOK_URL", server.url)
    monkeypatch.setenv("SHOP_CRM_RETRY_BASE_SECONDS", "60")
    monkeypatch.setenv("SHOP_CRM_RETRY_MAX_SECONDS", "600")
    monkeypatch.setenv("SHOP_CRM_MAX_ATTEMPTS", "4")
    monkeypatch.delenv("SHOP_CRM_WEBHOOK_SECRET", raising=False)
    yield server
    server.close()


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/crm/leads"


def deliver(engine, now):
    with session_scope(engine) as session:
        return deliver_due_leads(session, now)


def crm_state(engine):
    [lead] = lead_rows(engine)
    return lead.crm_status, lead.crm_attempts, lead.crm_next_attempt_at, lead.crm_last_error


def test_a_lead_reaches_the_crm_as_json_once(engine, crm, monkeypatch):
    monkeypatch.setenv("SHOP_CRM_WEBHOOK_SECRET", "crm-test-secret")
    stored = store(engine)
    assert deliver(engine, T0) == 1

    [(headers, payload, body)] = crm.received
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == f"lead-{stored.id}-v1"
    expected = hmac.new(b"crm-test-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Shop-Signature"] == f"sha256={expected}"
    assert {k: payload[k] for k in ("id", "conversation_id", "source", "email", "stage", "score", "quantity",
                                    "budget_cents")} == {
        "id": stored.id, "conversation_id": "chat-1", "source": "chat", "email": "dana@harbor.example",
        "stage": "hot", "score": 100, "quantity": 200, "budget_cents": 1_500_000}
    assert payload["reasons"] == stored.reasons
    assert payload["consent"] == {"given": True, "text": CONSENT, "at": "2024-06-17T10:00:00Z"}
    assert payload["callback"] is None
    assert crm_state(engine) == ("delivered", 1, None, "")

    assert deliver(engine, T0 + timedelta(hours=1)) == 0
    assert len(crm.received) == 1


def test_a_crm_that_is_down_is_retried_with_backoff_until_the_last_attempt(engine, crm, monkeypatch):
    monkeypatch.setenv("SHOP_CRM_WEBHOOK_URL", closed_port_url())
    store(engine)

    assert deliver(engine, T0) == 0
    status, attempts, next_at, error = crm_state(engine)
    assert (status, attempts, next_at) == ("pending", 1, T0 + timedelta(seconds=60))
    assert "refused" in error.lower() or "URLError" in error

    assert deliver(engine, T0 + timedelta(seconds=59)) == 0  # not due yet: no attempt
    assert crm_state(engine)[1] == 1
    deliver(engine, T0 + timedelta(seconds=60))
    assert crm_state(engine)[1:3] == (2, T0 + timedelta(seconds=180))  # 60 s, then 120 s
    deliver(engine, T0 + timedelta(seconds=180))
    assert crm_state(engine)[1:3] == (3, T0 + timedelta(seconds=420))  # then 240 s
    deliver(engine, T0 + timedelta(seconds=420))
    status, attempts, next_at, error = crm_state(engine)
    assert (status, attempts, next_at) == ("failed", 4, None) and error

    # nothing is lost: once the CRM is back, the failed lead gets a fresh round and arrives
    monkeypatch.setenv("SHOP_CRM_WEBHOOK_URL", crm.url)
    with session_scope(engine) as session:
        assert requeue_failed(session, T0 + timedelta(hours=1)) == 1
    assert deliver(engine, T0 + timedelta(hours=1)) == 1
    assert crm_state(engine)[0] == "delivered"


def test_a_failing_crm_answer_is_retried_and_the_wait_is_capped(engine, crm, monkeypatch):
    monkeypatch.setenv("SHOP_CRM_RETRY_MAX_SECONDS", "90")
    monkeypatch.setenv("SHOP_CRM_MAX_ATTEMPTS", "8")
    crm.statuses = [500, 503, 500]
    store(engine)

    deliver(engine, T0)
    assert crm_state(engine) == ("pending", 1, T0 + timedelta(seconds=60), "HTTP 500")
    deliver(engine, T0 + timedelta(seconds=60))
    assert crm_state(engine) == ("pending", 2, T0 + timedelta(seconds=150), "HTTP 503")  # 120 s capped at 90
    deliver(engine, T0 + timedelta(seconds=150))
    assert crm_state(engine)[1:3] == (3, T0 + timedelta(seconds=240))
    assert deliver(engine, T0 + timedelta(seconds=240)) == 1
    assert crm_state(engine) == ("delivered", 4, None, "")
    assert len(crm.received) == 4 and len({h["Idempotency-Key"] for h, _, _ in crm.received}) == 1


def test_a_slow_crm_times_out_and_the_lead_waits_for_the_retry(engine, crm, monkeypatch):
    monkeypatch.setenv("SHOP_CRM_TIMEOUT_SECONDS", "0.3")
    crm.hold_requests = True
    store(engine)

    assert deliver(engine, T0) == 0
    status, attempts, next_at, error = crm_state(engine)
    assert (status, attempts, next_at) == ("pending", 1, T0 + timedelta(seconds=60))
    assert "timed out" in error

    crm.hold_requests = False
    crm.hold.set()
    assert deliver(engine, T0 + timedelta(seconds=60)) == 1


def test_a_lead_changed_while_it_was_being_sent_stays_queued_as_the_new_version(engine, crm):
    store(engine, answers=WARM)

    def post_while_the_shopper_changes_their_answers(url, body, headers, timeout):
        from shop.leads import http_post

        status = http_post(url, body, headers, timeout)
        store(engine, answers=HOT, now=T0 + timedelta(seconds=1))
        return status

    with session_scope(engine) as session:
        assert deliver_due_leads(session, T0, post=post_while_the_shopper_changes_their_answers) == 1
    [lead] = lead_rows(engine)
    assert (lead.crm_status, lead.crm_version, lead.stage) == ("pending", 2, "hot")
    assert deliver(engine, T0 + timedelta(seconds=1)) == 1
    assert [p["version"] for _, p, _ in crm.received] == [1, 2]
    assert crm_state(engine)[0] == "delivered"


def test_without_a_webhook_url_leads_wait_as_pending(engine, monkeypatch):
    monkeypatch.delenv("SHOP_CRM_WEBHOOK_URL", raising=False)
    store(engine)
    assert deliver(engine, T0) == 0
    assert crm_state(engine) == ("pending", 0, T0, "")


# ----------------------------------------------------------------------------- `python -m shop leads`


def test_the_leads_commands_export_and_deliver(database_url, crm, tmp_path, capsys):
    engine = make_engine(database_url)
    create_schema(engine)
    store(engine)
    out = tmp_path / "exports" / "leads.csv"

    assert main(["leads", "export", "--out", str(out), "--database-url", database_url]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["stage"], r["email"]) for r in rows] == [("hot", "dana@harbor.example")]
    assert "Exported 1 leads" in capsys.readouterr().err

    assert main(["leads", "deliver", "--database-url", database_url]) == 0
    assert "Delivered 1 leads to the CRM. Now: 0 pending, 1 delivered, 0 failed." in capsys.readouterr().out
    assert len(crm.received) == 1
    engine.dispose()


def test_leads_deliver_without_a_webhook_says_what_is_waiting(database_url, capsys, monkeypatch):
    monkeypatch.delenv("SHOP_CRM_WEBHOOK_URL", raising=False)
    engine = make_engine(database_url)
    create_schema(engine)
    store(engine)
    engine.dispose()
    assert main(["leads", "deliver", "--database-url", database_url]) == 1
    assert "SHOP_CRM_WEBHOOK_URL is not set; 1 leads wait as pending" in capsys.readouterr().err
