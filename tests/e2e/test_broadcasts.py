"""A promotion broadcast end to end: two shoppers subscribe in the live chat, `python -m shop broadcast` mails
both (real SMTP) and says it in the open chat of the one whose chat is tied to their email, the unsubscribe
link and the chat's Unsubscribe button work, and running the broadcast again sends nothing twice."""
import html
import re

import requests
from sqlalchemy import select

from shop.broadcasts import Broadcast, BroadcastDelivery
from shop.db import session_scope
from shop.newsletter import NewsletterSubscriber
from tests.e2e.chat import ask, buttons, reply_with, verify_by_emailed_code
from tests.e2e.conftest import SHOP_NAME
from tests.e2e.test_orders import DEMO_EMAIL
from tests.e2e.test_socketio import WebChatClient

KEY = "e2e-summer-sale"
SUBJECT = "Summer sale: picked for you"
OPEN_CHAT = "e2e-broadcast-open-chat"
EMAIL_ONLY = "sam.rivera.e2e@example.com"


def subscribe_in_chat(chat: WebChatClient, email: str, known: bool) -> None:
    """Subscribe as a shopper does; a chat that already knows the email (`known`) only asks for the yes."""
    if known:
        consent = ask(chat, "subscribe me to the newsletter", "May I send our newsletter to")
    else:
        ask(chat, "subscribe me to the newsletter", "Which email address is it for?")
        consent = ask(chat, email, "May I send our newsletter to")
    assert email in consent["text"]
    ask(chat, "yes", f"{email} is subscribed to our newsletter")


def deliveries(engine, email: str):
    with session_scope(engine) as session:
        return sorted(session.execute(
            select(BroadcastDelivery.channel, BroadcastDelivery.status, BroadcastDelivery.conversation_id)
            .join(Broadcast, Broadcast.id == BroadcastDelivery.broadcast_id)
            .join(NewsletterSubscriber, NewsletterSubscriber.id == BroadcastDelivery.subscriber_id)
            .where(Broadcast.key == KEY, NewsletterSubscriber.email == email)
        ).all())


def subscription(engine, email: str) -> str:
    with session_scope(engine) as session:
        return session.execute(select(NewsletterSubscriber.status)
                               .where(NewsletterSubscriber.email == email)).scalar_one()


def mails_to(mailbox, email: str):
    return [mail for mail in mailbox.messages if email in mail.rcpt_tos and mail.message["Subject"] == SUBJECT]


def test_a_broadcast_reaches_subscribers_by_mail_and_in_their_open_chat_once(stack, mailbox):
    engine = stack.engine()
    chat = WebChatClient(stack.rasa_url, OPEN_CHAT)
    email_only = WebChatClient(stack.rasa_url, "e2e-broadcast-email-only")
    try:
        # Verifying ties this chat to the demo shopper's email, so the broadcast finds it open.
        verify_by_emailed_code(chat, mailbox, DEMO_EMAIL)
        subscribe_in_chat(chat, DEMO_EMAIL, known=True)  # the email given for the code
        subscribe_in_chat(email_only, EMAIL_ONLY, known=False)

        sent = stack.shop("broadcast", "--kind", "promotion", "--subject", SUBJECT, "--key", KEY)
        assert f"Promotion broadcast {KEY}:" in sent

        # The web chat shows each paragraph of the message as a bubble; the last one carries the button.
        picks = reply_with(chat, f"On sale at {SHOP_NAME}, picked for you:")["text"]
        said = reply_with(chat, f"You get this because you subscribed to the {SHOP_NAME} newsletter.")
        assert buttons(said) == {"Unsubscribe": "/newsletter_unsubscribe"}
        assert "/newsletter/unsubscribe/" in said["text"]
        cards = chat.next_reply()["attachment"]["payload"]["elements"]
        assert cards and all(card["title"] in picks for card in cards)

        [mail] = mails_to(mailbox, DEMO_EMAIL)
        assert mail.body.startswith("Hi Alex,") and "/newsletter/unsubscribe/" in mail.body
        assert all(card["title"] in mail.body for card in cards)  # the same picks by mail and in the chat
        [other] = mails_to(mailbox, EMAIL_ONLY)
        assert deliveries(engine, DEMO_EMAIL) == [("chat", "sent", OPEN_CHAT), ("email", "sent", None)]
        assert deliveries(engine, EMAIL_ONLY) == [("email", "sent", None)]

        # The link in the mail: a page with one button, which unsubscribes.
        link = re.search(r"Unsubscribe: (\S+)", other.body).group(1)
        page = requests.get(link, timeout=30)
        assert page.ok and "<form" in page.text and subscription(engine, EMAIL_ONLY) == "subscribed"
        done = requests.post(link, timeout=30)
        assert done.ok and "You're unsubscribed" in html.unescape(done.text)
        assert subscription(engine, EMAIL_ONLY) == "unsubscribed"

        again = stack.shop("broadcast", "--kind", "promotion", "--subject", SUBJECT, "--key", KEY)
        assert f"Promotion broadcast {KEY}: 0 emailed, 0 said in an open chat" in again
        assert len(mails_to(mailbox, DEMO_EMAIL)) == 1 and len(mails_to(mailbox, EMAIL_ONLY)) == 1
        assert deliveries(engine, DEMO_EMAIL) == [("chat", "sent", OPEN_CHAT), ("email", "sent", None)]

        # The chat's Unsubscribe button needs no question: the broadcast named the address.
        ask(chat, buttons(said)["Unsubscribe"], "You're unsubscribed")
        assert subscription(engine, DEMO_EMAIL) == "unsubscribed"
    finally:
        chat.close()
        email_only.close()
