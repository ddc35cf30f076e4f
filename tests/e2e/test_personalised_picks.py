"""A returning customer, verified in the chat, gets picks from their own orders and keeps their preferences."""
import re

from sqlalchemy import select

from shop.db import session_scope
from shop.models import Customer, Order
from shop.recommendations import personalised_picks
from shop.seed import DEMO_CUSTOMER
from tests.e2e.test_rest import say, text_of

DEMO_EMAIL = DEMO_CUSTOMER["email"]  # one order in every status


def listed_titles(reply: str):
    return re.findall(r"^\d\. (.+?) \(\$", reply, re.MULTILINE)


def verify_with_order(stack, sender: str) -> None:
    with session_scope(stack.engine()) as session:
        number = session.execute(
            select(Order.number).where(Order.email == DEMO_EMAIL, Order.status == "delivered")
        ).scalars().first()
    say(stack, sender, "where is my order?")
    status = text_of(say(stack, sender, f"{number} {DEMO_EMAIL}"))
    assert f"Order {number}" in status, status


def test_verified_customer_gets_picks_from_their_orders_and_a_saved_dislike(stack):
    anonymous = text_of(say(stack, "e2e-personal-anonymous", "recommend something for me"))
    assert "What's the occasion?" in anonymous  # nobody is verified: the quiz starts, past "who is it for"

    sender = "e2e-personal-picks"
    verify_with_order(stack, sender)
    saved = text_of(say(stack, sender, "I don't like yellow"))
    assert "avoid yellow" in saved and "saved it to your account" in saved
    with session_scope(stack.engine()) as session:
        preferences = session.execute(select(Customer.preferences).where(Customer.email == DEMO_EMAIL)).scalar_one()
    assert "yellow" in preferences["disliked_colors"]

    picks = text_of(say(stack, sender, "recommend something for me"))
    assert "picks for you, from your orders and the preferences you gave" in picks, picks
    with session_scope(stack.engine()) as session:
        expected = [pick.product.title for pick in personalised_picks(session, DEMO_EMAIL)]
        assert all("yellow" not in [c.lower() for c in pick.product.colors]
                   for pick in personalised_picks(session, DEMO_EMAIL))
    assert 3 <= len(expected) <= 5
    assert listed_titles(picks) == expected


def test_a_new_conversation_of_the_same_customer_uses_the_stored_size(stack):
    first, second = "e2e-personal-size-1", "e2e-personal-size-2"
    verify_with_order(stack, first)
    assert "saved it to your account" in text_of(say(stack, first, "I'm a size XL"))

    verify_with_order(stack, second)
    picks = text_of(say(stack, second, "recommend something for me"))
    assert "picks for you" in picks, picks
    with session_scope(stack.engine()) as session:
        preferences = session.execute(select(Customer.preferences).where(Customer.email == DEMO_EMAIL)).scalar_one()
        expected = [pick.product.title for pick in personalised_picks(session, DEMO_EMAIL)]
    assert preferences["size"] == "XL"
    assert listed_titles(picks) == expected
