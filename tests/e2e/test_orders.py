"""Orders end to end: the one-time code travels through a real local SMTP server to a real Rasa stack."""
import re

from sqlalchemy import select

from shop.models import Order
from shop.seed import DEMO_CUSTOMER
from tests.e2e.test_rest import say, text_of

DEMO_EMAIL = DEMO_CUSTOMER["email"]  # one order in every status


def demo_order(stack, status: str) -> Order:
    engine = stack.engine()
    with engine.connect() as conn:
        row = conn.execute(select(Order.number, Order.carrier, Order.tracking_number)
                           .where(Order.email == DEMO_EMAIL, Order.status == status)).first()
    engine.dispose()
    return row


def test_a_shopper_verifies_with_an_emailed_code_and_tracks_an_order(stack, mailbox):
    shipped = demo_order(stack, "shipped")
    sender = "e2e-orders-code"

    asked = text_of(say(stack, sender, "where is my order?"))
    assert "order number" in asked and shipped.number not in asked
    assert "email address" in text_of(say(stack, sender, "I don't have the number, can you send me a code"))
    before = len(mailbox.messages)
    assert "code is on its way" in text_of(say(stack, sender, DEMO_EMAIL))

    [mail] = mailbox.messages[before:]
    assert mail.rcpt_tos == [DEMO_EMAIL]
    code = re.search(r"\b(\d{6})\b", mail.body).group(1)
    verified = text_of(say(stack, sender, code))
    assert "right code" in verified and shipped.number in verified

    status = text_of(say(stack, sender, f"where is {shipped.number}"))
    assert f"Order {shipped.number}" in status and "shipped and on its way" in status
    assert shipped.tracking_number in status


def test_an_order_number_with_a_wrong_email_reveals_nothing(stack):
    shipped = demo_order(stack, "shipped")
    sender = "e2e-orders-guess"

    say(stack, sender, "where is my order?")
    reply = text_of(say(stack, sender, f"{shipped.number} guess@example.org"))

    assert "couldn't verify" in reply
    assert shipped.tracking_number not in reply and "shipped" not in reply
