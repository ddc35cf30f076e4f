"""A promotion or new-arrivals broadcast said in the shopper's open chat.

`python -m shop broadcast` (shop/broadcasts.py) triggers EXTERNAL_broadcast in the chat with the id of
the recorded delivery; this action shows that message (product cards on the web chat), its unsubscribe
link and an Unsubscribe button, and remembers the products so "tell me more about the second one" works.
The message is read from the database for this conversation only, so a typed /EXTERNAL_broadcast shows
nothing, and nothing is said to a subscriber who unsubscribed since.
"""
import logging
from typing import Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.presentation import channel_supports_cards, product_carousel
from shop.broadcasts import chat_broadcast
from shop.catalog import summaries_for_handles
from shop.db import session_scope

logger = logging.getLogger(__name__)

UNSUBSCRIBE_BUTTON = {"title": "Unsubscribe", "payload": "/newsletter_unsubscribe"}


class ActionBroadcastMessage(Action):
    def name(self) -> Text:
        return "action_broadcast_message"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        delivery_id = next(tracker.get_latest_entity_values("broadcast_delivery"), None)
        if delivery_id is None:
            return []
        try:
            with session_scope() as session:
                message = chat_broadcast(session, delivery_id, tracker.sender_id)
                products = summaries_for_handles(session, list(message.product_handles)) if message else []
        except SQLAlchemyError:
            # Nobody asked for this message: staying quiet is better than an error the shopper didn't cause.
            logger.exception("Reading broadcast delivery %s failed", delivery_id)
            return []
        if message is None:
            return []
        dispatcher.utter_message(text=message.body.strip(), buttons=[UNSUBSCRIBE_BUTTON])
        if products and channel_supports_cards(tracker):
            dispatcher.utter_message(attachment=product_carousel(products))
        events = [SlotSet("newsletter_email", message.email)]  # so "Unsubscribe" needs no question
        if products:
            events.append(SlotSet("shown_products", [p.handle for p in products]))
        return events
