"""action_broadcast_message: a recorded broadcast delivery said in its own chat, on a real SQLite shop."""
import asyncio
from datetime import datetime

from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.broadcasts import ActionBroadcastMessage
from shop.broadcasts import Broadcast, BroadcastDelivery
from shop.db import session_scope
from shop.newsletter import NewsletterSubscriber, subscribe, unsubscribe
from tests.actions.trackers import entity, tracker_for

NOW = datetime(2024, 6, 15, 12, 0)
BODY = "Hi Alex,\n\nNew at the shop, picked for you:\n- Blaze Runner Sneaker ...\n\nUnsubscribe: http://shop.test/x\n"


def delivered(engine, conversation_id="shopper-1") -> str:
    """A chat delivery to alex@example.com in `conversation_id`, as `python -m shop broadcast` records it."""
    with session_scope(engine) as session:
        subscribe(session, "alex@example.com", "chat", NOW)
        subscriber_id = session.execute(
            select(NewsletterSubscriber.id).where(NewsletterSubscriber.email == "alex@example.com")
        ).scalar_one()
        broadcast = Broadcast(key=f"news-{conversation_id}", kind="new-arrivals", subject="Just in", created_at=NOW)
        session.add(broadcast)
        session.flush()
        delivery = BroadcastDelivery(broadcast_id=broadcast.id, subscriber_id=subscriber_id, channel="chat",
                                     conversation_id=conversation_id, status="sent", body=BODY,
                                     product_handles=["blaze-runner-sneaker", "harbor-denim-jacket"],
                                     created_at=NOW, sent_at=NOW)
        session.add(delivery)
        session.flush()
        return str(delivery.id)


def say(delivery_id, channel="socketio"):
    tracker = tracker_for("/EXTERNAL_broadcast", "EXTERNAL_broadcast", [entity("broadcast_delivery", delivery_id)],
                          channel=channel)
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionBroadcastMessage().run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def test_the_broadcast_is_said_with_product_cards_and_an_unsubscribe_button(shop_engine):
    messages, events = say(delivered(shop_engine))
    assert messages[0]["text"] == BODY.strip()
    assert messages[0]["buttons"] == [{"title": "Unsubscribe", "payload": "/newsletter_unsubscribe"}]
    cards = messages[1]["attachment"]["payload"]["elements"]
    assert [card["title"] for card in cards] == ["Blaze Runner Sneaker", "Harbor Denim Jacket"]
    # "Unsubscribe" needs no question, and "the second one" means the jacket.
    assert events == [SlotSet("newsletter_email", "alex@example.com"),
                      SlotSet("shown_products", ["blaze-runner-sneaker", "harbor-denim-jacket"])]


def test_plain_channels_get_the_text_without_cards(shop_engine):
    messages, _ = say(delivered(shop_engine), channel="rest")
    assert [m["text"] for m in messages] == [BODY.strip()]


def test_another_chat_or_an_unsubscribed_reader_is_shown_nothing(shop_engine):
    mine, elsewhere = delivered(shop_engine), delivered(shop_engine, conversation_id="someone-else")
    assert say(elsewhere) == ([], [])  # typed into this chat, another chat's delivery shows nothing
    assert say("12345") == ([], [])
    assert say("not-a-number") == ([], [])
    with session_scope(shop_engine) as session:
        unsubscribe(session, "alex@example.com", now=NOW)
    assert say(mine) == ([], [])
