import re

import requests

from tests.e2e.catalog_checks import assert_are_red_sneakers_under
from tests.e2e.conftest import SHOP_NAME

LISTED_PRODUCT = re.compile(r"^\d+\. (.+?) by .+?: \$\d", re.MULTILINE)


def say(stack, sender: str, text: str):
    response = requests.post(
        f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60
    )
    response.raise_for_status()
    return response.json()


def text_of(replies) -> str:
    """The texts of a REST answer's messages, one per line."""
    return "\n".join(r.get("text", "") for r in replies)


def test_rest_conversation_greets_then_lists_products_from_the_database(stack):
    greeting = say(stack, "rest-shopper", "hello")
    assert f"welcome to {SHOP_NAME}" in greeting[0]["text"]

    replies = say(stack, "rest-shopper", "show me red sneakers under 80 dollars")
    text = "\n".join(r.get("text", "") for r in replies)
    assert "red sneakers under $80" in text
    assert_are_red_sneakers_under(stack.engine(), LISTED_PRODUCT.findall(text), 8000)


def test_rest_help_offers_buttons(stack):
    replies = say(stack, "rest-helper", "what can you do?")
    assert replies[0]["buttons"], replies
    assert any("sneakers" in b["payload"] for b in replies[0]["buttons"])


def test_oversized_message_gets_an_answer_not_an_error(stack):
    replies = say(stack, "rest-flood", "sneakers " * 1200)
    assert replies and all("text" in r or "attachment" in r for r in replies)
