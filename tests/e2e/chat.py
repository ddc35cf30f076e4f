"""What the end-to-end tests wait for in a live web chat (socket.io), and the shop worker they start."""
import queue
import re
import time
from typing import Dict, List, Optional

import requests

from ops.servers import BIN, Server
from tests.e2e.test_socketio import WebChatClient

# Rasa under load on two shared cores can take this long for one answer; a reply that never comes fails.
REPLY_DEADLINE_SECONDS = 120


def replies_until(chat: WebChatClient, containing: str, deadline: float = REPLY_DEADLINE_SECONDS) -> List[dict]:
    """Every bot message up to and including the first whose text contains `containing`; fails naming what the
    bot said instead when that never comes."""
    seen: List[dict] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            message = chat.replies.get(timeout=max(0.1, end - time.monotonic()))
        except queue.Empty:
            break
        seen.append(message)
        if containing in (message.get("text") or ""):
            return seen
    said = [message.get("text") or f"<{', '.join(sorted(message))}>" for message in seen]
    raise AssertionError(f"no reply containing {containing!r} within {deadline}s; the bot said: {said}")


def reply_with(chat: WebChatClient, containing: str, deadline: float = REPLY_DEADLINE_SECONDS) -> dict:
    """The next bot message whose text contains `containing`; earlier ones (cards, other answers) are passed over."""
    return replies_until(chat, containing, deadline)[-1]


def reply_text(chat: WebChatClient, containing: str, deadline: float = REPLY_DEADLINE_SECONDS) -> str:
    return reply_with(chat, containing, deadline)["text"]


def ask(chat: WebChatClient, text: str, expected: str) -> dict:
    """Say `text` and return the bot's answer that contains `expected`."""
    chat.say(text)
    return reply_with(chat, expected)


def buttons(message: dict) -> Dict[str, str]:
    """The buttons of a bot message as the widget shows them: title -> payload (or URL)."""
    return {reply["title"]: reply.get("payload") or reply.get("url") for reply in message.get("quick_replies") or []}


def emailed_code(mailbox, address: str, already: int, deadline: float = 60) -> str:
    """The six-digit code in the first mail to `address` after the first `already` mails of the mailbox."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for mail in mailbox.messages[already:]:
            if address in mail.rcpt_tos:
                return re.search(r"\b(\d{6})\b", mail.body).group(1)
        time.sleep(0.2)
    raise AssertionError(f"no mail to {address} within {deadline}s")


def verify_by_emailed_code(chat: WebChatClient, mailbox, email: str) -> str:
    """Verify the chat as the owner of `email` the way a shopper does (asking about an order, then the code
    mailed by the action server); returns the bot's "right code" answer, which lists their orders."""
    ask(chat, "where is my order?", "order number")
    ask(chat, "I don't have the number, can you send me a code", "email address")
    before = len(mailbox.messages)
    ask(chat, email, "code is on its way")
    return ask(chat, emailed_code(mailbox, email, before), "right code")["text"]


def check_out_and_pay(chat: WebChatClient, name: str, email: str) -> str:
    """Check the chat's cart out through the checkout form and pay on the sandbox page with the test card, as a
    shopper does; the order's number, once the chat has confirmed the payment."""
    ask(chat, "checkout", "What name should go on the shipping label?")
    for answer, next_question in [(name, "Which email address"), (email, "What's the shipping address?"),
                                  ("12 Harbour Road, Portland, 97205, US", "Which shipping would you like"),
                                  ("standard", "Shall I place the order for")]:
        ask(chat, answer, next_question)
    placed = ask(chat, "yes", "is placed and waiting for payment")
    number = re.search(r"Order (SH-\d+)", placed["text"]).group(1)
    paid = requests.post(buttons(placed)["Pay now"],
                         data={"card_number": "4242 4242 4242 4242", "expiry": "12/34", "cvc": "123"}, timeout=60)
    assert paid.ok and f"order {number} is paid" in paid.text
    reply_text(chat, f"your order {number} is confirmed")
    return number


def start_worker(stack, log_name: str, env: Optional[Dict[str, str]] = None) -> Server:
    """`python -m shop worker` as `make run` starts it, a round every second, on the stack's database."""
    return Server("shop worker", [str(BIN / "python"), "-m", "shop", "worker", "--interval", "1"],
                  {**stack.env, **(env or {})}, stack.workdir / log_name)


def wait_until(condition, what: str, deadline: float = 90, every: float = 0.5):
    """Poll `condition()` until it returns something truthy (which is returned); fail naming `what`."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {deadline}s")
