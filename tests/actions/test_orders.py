"""Order conversations through the real validation, ask and submit actions, on a real SQLite shop.

`Chat` plays Rasa's part of a form loop (validate, then ask the requested slot or submit), so a test
reads like the conversation a shopper has. Refusals also check the database is unchanged.
"""
from datetime import datetime, timedelta
from typing import Dict, List, Optional

import pytest
from rasa_sdk import Tracker

from actions.faq import ActionAnswerFaq
from actions.orders import (
    ActionAskOrderChangeItem,
    ActionAskOrderChangeKind,
    ActionAskOrderChangeQuantity,
    ActionAskOrderConfirm,
    ActionAskOrderNewAddress,
    ActionAskOrderNumber,
    ActionCancelOrder,
    ActionChangeOrder,
    ActionOrderStatus,
    ValidateOrderCancelForm,
    ValidateOrderChangeForm,
    ValidateOrderStatusForm,
)
from actions.returns import (
    ActionAskOrderReturnItems,
    ActionAskOrderReturnReason,
    ActionAskOrderReturnResolution,
    ActionRefundStatus,
    ActionStartReturn,
    ValidateOrderRefundForm,
    ValidateOrderReturnForm,
)
from actions.verification import ActionAskOrderCode, ActionAskOrderCodeEmail, ActionAskOrderIdentity
from shop.db import session_scope
from shop.models import Order, Product, Variant
from shop.verification import VerificationSession
from tests.unit.service_helpers import catalog, make_order, smtp_server, snapshot
from tests.actions.trackers import run

OWNER = "alex@example.com"
TODAY = datetime.utcnow().date()
FORMS = {
    "order_status": ("order_status_form", ValidateOrderStatusForm(), ActionOrderStatus()),
    "send_code": ("order_status_form", ValidateOrderStatusForm(), ActionOrderStatus()),
    "change_order": ("order_change_form", ValidateOrderChangeForm(), ActionChangeOrder()),
    "cancel_order": ("order_cancel_form", ValidateOrderCancelForm(), ActionCancelOrder()),
    "start_return": ("order_return_form", ValidateOrderReturnForm(), ActionStartReturn()),
    "request_refund": ("order_refund_form", ValidateOrderRefundForm(), ActionRefundStatus()),
}
ASKS = {action.name().replace("action_ask_", ""): action for action in (
    ActionAskOrderNumber(), ActionAskOrderIdentity(), ActionAskOrderCodeEmail(), ActionAskOrderCode(),
    ActionAskOrderChangeKind(), ActionAskOrderChangeItem(), ActionAskOrderChangeQuantity(),
    ActionAskOrderNewAddress(), ActionAskOrderConfirm(), ActionAskOrderReturnItems(),
    ActionAskOrderReturnReason(), ActionAskOrderReturnResolution())}
FAQ_INTENTS = {"return_policy", "delivery_time", "shipping_options", "payment_methods", "contact_info",
               "create_account", "recover_password"}


def order_data(engine):
    """Every shop table except the verification records, which a refusal after verifying rightly adds."""
    return {table: rows for table, rows in snapshot(engine).items() if not table.startswith("verification_")}


class Chat:
    """One conversation: what Rasa does around the order forms, with the real actions."""

    def __init__(self, sender: str = "shopper-1"):
        self.sender = sender
        self.slots: Dict = {}
        self.form: Optional[str] = None
        self.validator = self.submit = None
        self.last_message: Dict = {}
        self.buttons: List[Dict] = []

    def _tracker(self, latest_action: str = "action_listen") -> Tracker:
        events = [{"event": "action", "name": "action_listen"},
                  {"event": "user", "text": self.last_message.get("text"), "parse_data": self.last_message,
                   "input_channel": "rest"}]
        if latest_action != "action_listen":
            events.append({"event": "action", "name": latest_action})
        return Tracker(self.sender, dict(self.slots), self.last_message, events, False, None,
                       {"name": self.form} if self.form else {}, latest_action)

    def _validation_tracker(self, latest_action: str = "action_listen") -> Tracker:
        """What validate_<form> gets from Rasa: a copy of the conversation that ends with the form's own
        execution (rasa.core.actions.forms.FormAction._temporary_tracker), so its latest action is the form."""
        tracker = self._tracker(latest_action)
        tracker.events += [{"event": "slot", "name": "requested_slot", "value": self.slots.get("requested_slot")},
                           {"event": "action", "name": self.form}]
        tracker.latest_action_name = self.form
        return tracker

    def _apply(self, events) -> None:
        for event in events:
            if event.get("event") == "slot":
                self.slots[event["name"]] = event["value"]

    def _collect(self, messages, replies: List[str]) -> None:
        for message in messages:
            if message.get("text"):
                replies.append(message["text"])
            self.buttons = message.get("buttons") or self.buttons

    def say(self, text: str, intent: str = "inform", **entities) -> str:
        """The shopper's message; returns everything the assistant answers, joined by newlines."""
        self.last_message = {"text": text, "intent": {"name": intent, "confidence": 0.95},
                             "entities": [{"entity": k, "value": v} for k, v in entities.items()]}
        self.buttons = []
        replies: List[str] = []
        if self.form is None:
            if intent in FAQ_INTENTS:
                self._collect(run(ActionAnswerFaq(), self._tracker())[0], replies)
                return "\n".join(replies)
            self.form, self.validator, self.submit = FORMS[intent]
            self.slots["requested_slot"] = None
        messages, events = run(self.validator, self._validation_tracker())
        if not events:  # rejected: not an answer, so a rule handles it and the form asks again
            assert intent in FAQ_INTENTS, f"the form rejected {text!r}"
            self._collect(run(ActionAnswerFaq(), self._tracker())[0], replies)
            messages, events = run(self.validator, self._validation_tracker("action_answer_faq"))
        self._collect(messages, replies)
        self._apply(events)
        self._continue(replies)
        return "\n".join(replies)

    def _continue(self, replies: List[str]) -> None:
        requested = self.slots.get("requested_slot")
        if requested:
            self._collect(run(ASKS[requested], self._tracker(self.form))[0], replies)
            return
        self.form = None
        messages, events = run(self.submit, self._tracker())
        self._collect(messages, replies)
        self._apply(events)

    @property
    def asking(self) -> Optional[str]:
        return self.slots.get("requested_slot") if self.form else None


@pytest.fixture
def shop(shop_engine):
    """Alex's orders in every status that matters, and one order of somebody else."""
    with session_scope(shop_engine) as session:
        v = catalog(session)
        make_order(session, "SH-100001", [(v["sneakers42"], 1), (v["tee"], 2)], status="paid", email=OWNER,
                   placed_at=datetime(2026, 1, 1, 9), estimated_delivery=TODAY + timedelta(days=4))
        make_order(session, "SH-100002", [(v["tee"], 1)], status="packed", email=OWNER,
                   placed_at=datetime(2026, 1, 2, 9))
        make_order(session, "SH-100003", [(v["sneakers43"], 1)], status="shipped", email=OWNER,
                   placed_at=datetime(2026, 1, 3, 9), carrier="UPS", tracking_number="1Z999AA10123456784",
                   estimated_delivery=TODAY - timedelta(days=3))
        make_order(session, "SH-100004", [(v["tee"], 2), (v["cream"], 1), (v["jacket"], 1)], status="delivered",
                   email=OWNER, placed_at=datetime(2026, 1, 4, 9),
                   delivered_at=datetime.utcnow() - timedelta(days=5))
        make_order(session, "SH-100005", [(v["sneakers42"], 1)], status="delivered", email=OWNER,
                   placed_at=datetime(2025, 1, 5, 9), delivered_at=datetime.utcnow() - timedelta(days=90))
        make_order(session, "SH-200001", [(v["tee"], 3)], status="paid", email="jo@example.org",
                   postcode="10001", placed_at=datetime(2026, 1, 6, 9))
    return shop_engine


def verified_chat(intent: str = "order_status", text: str = "where is order SH-100001"):
    """A chat verified with order number + email; returns it and the reply to the verification."""
    chat = Chat()
    chat.say(text, intent)
    assert chat.asking == "order_identity"
    reply = chat.say(OWNER)
    assert "you're verified" in reply
    return chat, reply


def stock_of(engine, title: str, size: str) -> int:
    with session_scope(engine) as session:
        return session.query(Variant).join(Product).filter(Product.title == title, Variant.size == size).one().stock


# ------------------------------------------------------------------------------ verification

def test_nothing_about_an_order_is_shown_before_verification(shop):
    chat = Chat()
    reply = chat.say("where is my order SH-100003", "order_status", order_number="SH-100003")

    assert chat.asking == "order_identity"
    assert "email address or the delivery postcode" in reply
    assert "UPS" not in reply and "shipped" not in reply


def test_order_number_and_email_verify_and_show_the_status_with_tracking(shop):
    chat = Chat()
    assert "order number" in chat.say("where is my order", "order_status")
    reply = chat.say("SH-100003 and alex@example.com", order_number="SH-100003", email=OWNER)

    assert "you're verified" in reply
    assert "Order SH-100003" in reply and "shipped and on its way" in reply
    assert "1 x Canvas Sneakers" in reply
    assert "UPS, tracking number 1Z999AA10123456784" in reply and "https://" in reply
    assert "Estimated delivery:" in reply


def test_a_late_order_gets_an_apology_and_a_person_to_talk_to(shop):
    chat = Chat()
    chat.say("track sh100003", "order_status")
    reply = chat.say("97205")

    assert "I'm sorry your order is late" in reply
    assert {"title": "Talk to a person", "payload": "/talk_to_human"} in chat.buttons


def test_an_unknown_order_number_reads_exactly_like_a_wrong_email(shop):
    unknown, wrong_email = Chat("shopper-a"), Chat("shopper-b")
    unknown.say("status of SH-999999", "order_status")
    wrong_email.say("status of SH-100001", "order_status")

    assert unknown.say("alex@example.com") == wrong_email.say("jo@example.org")
    assert unknown.asking == wrong_email.asking == "order_number"


def test_someone_elses_email_does_not_open_an_order(shop):
    chat = Chat()
    chat.say("where is SH-200001", "order_status")
    reply = chat.say(OWNER)

    assert "couldn't verify" in reply and "3 x Everyday Tee" not in reply
    assert chat.asking == "order_number"


def test_a_malformed_order_number_is_explained_and_not_counted(shop):
    chat = Chat()
    chat.say("where is my order", "order_status")
    reply = chat.say("ABC-12")

    assert "doesn't look like one of our order numbers" in reply
    assert chat.asking == "order_number"
    with session_scope(shop) as session:
        assert session.get(VerificationSession, "shopper-1") is None


def test_five_failures_lock_the_conversation_and_the_right_details_no_longer_work(shop):
    chat = Chat()
    chat.say("where is my order", "order_status")
    for attempt in range(4):
        assert "couldn't verify" in chat.say(f"SH-100001 wrong{attempt}@example.org")
    locked = chat.say("SH-100001 wrong4@example.org")

    assert "try again in 15 minutes" in locked
    assert chat.form is None
    again = Chat()
    reply = again.say("where is SH-100001", "order_status")
    assert "try again in 15 minutes" in reply and again.form is None


def test_verified_shopper_stays_verified_and_can_ask_for_all_orders_and_the_last_one(shop):
    chat, _ = verified_chat()
    everything = chat.say("show me all my orders", "order_status")

    assert chat.form is None and "order number" not in everything
    assert "You have 5 orders with us" in everything
    assert "SH-200001" not in everything
    last = chat.say("what about my last order", "order_status")
    assert "Order SH-100004" in last and "delivered" in last


def test_a_verified_shopper_asking_about_someone_elses_order_learns_nothing(shop):
    chat, _ = verified_chat()
    reply = chat.say("where is SH-200001", "order_status", order_number="SH-200001")

    assert "couldn't find an order SH-200001 for you" in reply
    assert "Everyday Tee" not in reply


def test_the_one_time_code_arrives_by_smtp_and_verifies(shop, monkeypatch):
    with smtp_server() as inbox:
        monkeypatch.setenv("SMTP_HOST", inbox.host)
        monkeypatch.setenv("SMTP_PORT", str(inbox.port))
        chat = Chat()
        chat.say("where is my order", "order_status")
        assert "6-digit code" in chat.say("I don't have the number, send me a code", "send_code")
        assert chat.asking == "order_code_email"
        assert "code is on its way" in chat.say("alex@example.com", email=OWNER)
        assert chat.asking == "order_code"
        wrong = "000000" if inbox.codes()[0] != "000000" else "111111"
        assert "isn't right" in chat.say(wrong)
        reply = chat.say(f"the code is {inbox.codes()[0]}")

    assert [m.rcpt_tos for m in inbox.messages] == [[OWNER]]
    assert "right code" in reply and "You have 5 orders with us" in reply


def test_a_code_for_an_unknown_email_gets_the_same_answer_and_no_mail(shop, monkeypatch):
    with smtp_server() as inbox:
        monkeypatch.setenv("SMTP_HOST", inbox.host)
        monkeypatch.setenv("SMTP_PORT", str(inbox.port))
        known, unknown = Chat("a"), Chat("b")
        known.say("send me a code", "send_code")
        unknown.say("send me a code", "send_code")
        assert known.say(OWNER) == unknown.say("nobody@example.org")

    assert len(inbox.messages) == 1


def test_stopping_half_way_changes_nothing(shop):
    chat = Chat()
    chat.say("where is my order", "order_status")
    reply = chat.say("no", "deny")

    assert "stopped" in reply and chat.form is None


# ------------------------------------------------------------------------------ FAQ inside forms

def test_the_return_policy_asked_in_the_middle_of_verification_then_the_form_goes_on(shop):
    chat = Chat()
    chat.say("i want to change my order", "change_order")
    reply = chat.say("what's your return policy", "return_policy")

    assert "within 30 days of delivery" in reply
    assert reply.rstrip().endswith("instead.")  # the verification question again
    assert chat.asking == "order_number"


# ------------------------------------------------------------------------------ cancel

def test_cancel_a_paid_order_after_confirmation_refunds_it_and_gives_back_stock(shop):
    before = stock_of(shop, "Canvas Sneakers", "42")
    chat, question = verified_chat("cancel_order", text="cancel order SH-100001")
    assert chat.asking == "order_confirm"
    assert "Cancel order SH-100001 (1 x Canvas Sneakers, 2 x Everyday Tee)? You'll get $" in question
    reply = chat.say("yes", "affirm")

    assert "is cancelled" in reply and "refund of $" in reply
    with session_scope(shop) as session:
        order = session.query(Order).filter_by(number="SH-100001").one()
        assert order.status == "cancelled" and order.refunds[0].amount_cents == order.total_cents
    assert stock_of(shop, "Canvas Sneakers", "42") == before + 1


def test_cancel_declined_leaves_the_order(shop):
    chat, _ = verified_chat("cancel_order", text="cancel order SH-100001")
    before = order_data(shop)
    reply = chat.say("no", "deny")

    assert "left the order as it is" in reply
    assert order_data(shop) == before


@pytest.mark.parametrize("number, expected", [
    ("SH-100004", "was delivered, so it can't be cancelled"),
    ("SH-100003", "has already shipped with UPS"),
])
def test_cancelling_a_shipped_or_delivered_order_is_refused_and_steered_to_a_return(shop, number, expected):
    chat = Chat()
    chat.say(f"cancel {number}", "cancel_order")
    before = order_data(shop)
    reply = chat.say(OWNER)

    assert expected in reply and "return" in reply
    assert chat.form is None
    assert order_data(shop) == before


# ------------------------------------------------------------------------------ change

def test_change_the_delivery_address_with_a_summary_and_confirmation(shop):
    chat = Chat()
    chat.say("change the address on my order", "change_order")
    chat.say("SH-100002 alex@example.com")
    assert chat.asking == "order_new_address"
    summary = chat.say("12 Oak Street, Portland, 97209")
    assert "Deliver order SH-100002 to 12 Oak Street, Portland, 97209 instead?" in summary
    reply = chat.say("yes", "affirm")

    assert "will now be delivered to" in reply
    with session_scope(shop) as session:
        order = session.query(Order).filter_by(number="SH-100002").one()
        assert (order.shipping_address, order.shipping_postcode) == ("12 Oak Street", "97209")


def test_change_a_quantity_while_not_packed(shop):
    chat = Chat()
    chat.say("change a quantity on SH-100001", "change_order")
    chat.say(OWNER)
    assert chat.asking == "order_change_item"
    chat.say("Everyday Tee")
    assert chat.asking == "order_change_quantity"
    summary = chat.say("1")
    assert "Change Everyday Tee on order SH-100001 from 2 to 1?" in summary
    reply = chat.say("yes", "affirm")

    assert "changed Everyday Tee (white / M) to 1" in reply and "refunding the difference" in reply


def test_removing_an_item_that_is_not_on_the_order_is_explained(shop):
    chat = Chat()
    chat.say("remove an item from SH-100001", "change_order")
    chat.say(OWNER)
    before = order_data(shop)
    reply = chat.say("the face cream")

    assert "can't find that item on order SH-100001" in reply and chat.asking == "order_change_item"
    assert order_data(shop) == before


def test_a_shipped_order_cannot_change_and_the_shopper_learns_what_to_do(shop):
    chat = Chat()
    chat.say("change the address of SH-100003", "change_order")
    before = order_data(shop)
    reply = chat.say("97205")

    assert "already shipped with UPS" in reply and "return" in reply
    assert chat.form is None and order_data(shop) == before


def test_items_of_a_packed_order_cannot_change_but_the_address_can(shop):
    chat = Chat()
    chat.say("remove an item from SH-100002", "change_order")
    reply = chat.say(OWNER)

    assert "already packed" in reply and chat.asking == "order_change_kind"
