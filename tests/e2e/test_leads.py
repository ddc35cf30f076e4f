"""A bulk-order enquiry in the live web chat: the qualification questions with a re-asked budget and email, the
hot lead's offer of a person or a call-back, one lead row with its score and reasons, the CSV export, and the
worker's delivery to a real CRM webhook that is down at first and comes up later."""
import csv
import io

from sqlalchemy import select

from ops.servers import free_port
from shop.db import session_scope
from shop.models import Lead
from tests.e2e.chat import ask, buttons, reply_with, start_worker, wait_until
from tests.e2e.test_socketio import WebChatClient
from tests.unit.test_leads import CrmServer

SENDER = "e2e-lead-bulk-hoodies"
EMAIL = "dana.okafor@acme-outdoor.example.com"
PHONE = "+1 503 555 0142"
CRM_SETTINGS = {"SHOP_CRM_RETRY_BASE_SECONDS": "1", "SHOP_CRM_RETRY_MAX_SECONDS": "2",
                "SHOP_CRM_MAX_ATTEMPTS": "1000", "SHOP_CRM_TIMEOUT_SECONDS": "5"}


def leads_of_this_chat(engine):
    with session_scope(engine) as session:
        leads = session.execute(select(Lead).where(Lead.conversation_id == SENDER)).scalars().all()
        session.expunge_all()
        return leads


def the_lead(engine) -> Lead:
    [lead] = leads_of_this_chat(engine)
    return lead


def lead_once(engine, condition):
    """The chat's lead when `condition(lead)` holds, else None (for wait_until)."""
    lead = the_lead(engine)
    return lead if condition(lead) else None


def test_a_bulk_enquiry_becomes_one_hot_lead_that_reaches_the_crm_once_it_is_up(stack):
    engine = stack.engine()
    crm_port = free_port()
    crm_url = f"http://127.0.0.1:{crm_port}/crm/leads"
    # The worker runs from the start, while nothing listens at the CRM's address.
    worker = start_worker(stack, "worker-leads.log", {**CRM_SETTINGS, "SHOP_CRM_WEBHOOK_URL": crm_url})
    chat = WebChatClient(stack.rasa_url, SENDER)
    crm = None
    try:
        chat.say("do you do bulk orders?")
        reply_with(chat, "we do bulk, team and wholesale orders")
        reply_with(chat, "What would you like to order?")
        ask(chat, "150 embroidered hoodies for our warehouse staff", "how many units")
        ask(chat, "200", "Which company")
        ask(chat, "Acme Outdoor Ltd", "What's your role")
        ask(chat, "Head of Operations", "budget in mind")
        # Words without an amount are asked again, with an example; the form stays on the budget.
        ask(chat, "lots", "I need a rough amount for the budget, like $5,000")
        reply_with(chat, "budget in mind")
        ask(chat, "$15,000", "When do you need it?")
        ask(chat, "in 3 weeks", "Which email address")
        ask(chat, "dana at acme", "doesn't look like an email address")
        reply_with(chat, "Which email address")
        consent = ask(chat, EMAIL, "Last question: is this OK?")
        assert EMAIL in consent["text"]
        assert leads_of_this_chat(engine) == []  # nothing is kept before the explicit yes

        summary = ask(chat, "yes", "passed your enquiry to our sales team")["text"]
        assert EMAIL in summary and "(hot)" in summary
        offer = reply_with(chat, "talk to someone from our team now")
        assert buttons(offer) == {"Talk to a person now": "/talk_to_human", "Call me back": "/request_callback"}

        lead = the_lead(engine)
        assert (lead.stage, lead.score, lead.source, lead.consent) == ("hot", 100, "chat", True)
        assert (lead.company, lead.role, lead.quantity, lead.budget_cents, lead.timeline, lead.email) == (
            "Acme Outdoor Ltd", "Head of Operations", 200, 1_500_000, "in 3 weeks", EMAIL)
        assert lead.need == "150 embroidered hoodies for our warehouse staff"
        assert EMAIL in lead.consent_text and lead.consented_at is not None
        # The shopper read the same reasons that are stored.
        assert lead.reasons and all(reason in summary for reason in lead.reasons)

        # The CRM is down: the lead waits in the outbox with the error, and the chat went on regardless.
        waiting = wait_until(lambda: lead_once(engine, lambda lead: lead.crm_attempts >= 1),
                             "a delivery attempt to the CRM that is down")
        assert waiting.crm_status == "pending" and waiting.crm_last_error

        chat.say("/request_callback")
        reply_with(chat, "Which phone number should we call?")
        ask(chat, PHONE, f"will call you on {PHONE}")

        crm = CrmServer(crm_port)
        delivered = wait_until(lambda: lead_once(engine, lambda lead: lead.crm_status == "delivered"),
                               "the lead delivered once the CRM is up")
    finally:
        chat.close()
        worker.stop()
        if crm is not None:
            crm.close()

    assert len(leads_of_this_chat(engine)) == 1  # the call-back updated the lead, it added none
    assert delivered.callback_phone == PHONE and delivered.crm_version == 2
    ours = [(headers, body) for headers, body, _raw in crm.received if body["id"] == delivered.id]
    assert len(ours) == 1, "the CRM got the lead more than once"
    headers, body = ours[0]
    assert headers["Idempotency-Key"] == f"lead-{delivered.id}-v2"
    assert (body["conversation_id"], body["stage"], body["score"], body["email"]) == (SENDER, "hot", 100, EMAIL)
    assert body["reasons"] == delivered.reasons and body["consent"]["given"] is True
    assert body["callback"]["phone"] == PHONE

    rows = list(csv.DictReader(io.StringIO(stack.shop("leads", "export", "--stage", "hot"))))
    [row] = [row for row in rows if row["conversation_id"] == SENDER]
    assert (row["stage"], row["score"], row["budget"], row["quantity"], row["consent"], row["crm_status"]) == (
        "hot", "100", "15000.00", "200", "yes", "delivered")
    assert row["reasons"] == "; ".join(delivered.reasons) and row["source"] == "chat"
    cold = list(csv.DictReader(io.StringIO(stack.shop("leads", "export", "--stage", "cold"))))
    assert SENDER not in {row["conversation_id"] for row in cold}
