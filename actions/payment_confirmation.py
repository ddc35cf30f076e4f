""""Your order is confirmed": said in the same chat once the payment webhook marked the order paid.

The shop front's webhook receiver triggers the intent payment_confirmed through Rasa's HTTP API
(web/payments.py, `chat_confirmation_hook`) with the order number; a shopper asking "did my payment go
through?" lands here too. The answer always comes from the database: only this conversation's orders.
"""
import logging
from typing import Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from actions.cart import latest_entity
from actions.feedback import ask_for_feedback_once
from actions.shop_errors import say_shop_data_unavailable
from shop.db import session_scope
from shop.models import Order
from shop.policy import format_money

logger = logging.getLogger(__name__)

PAID_OR_LATER = ("paid", "packed", "shipped", "delivered")


def _order_of_conversation(session, conversation_id: Text, number: Optional[Text]) -> Optional[Order]:
    query = select(Order).where(Order.conversation_id == conversation_id)
    if number:
        query = query.where(Order.number == number.upper())
    return session.execute(query.order_by(Order.id.desc()).limit(1)).scalar_one_or_none()


class ActionConfirmPayment(Action):
    def name(self) -> Text:
        return "action_confirm_payment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        number = latest_entity(tracker, "order_number") or tracker.get_slot("cart_order_number")
        try:
            with session_scope() as session:
                order = _order_of_conversation(session, tracker.sender_id, number)
                found = None if order is None else (order.number, order.status, order.total_cents, order.email)
        except SQLAlchemyError:
            logger.exception("Reading the order's payment failed")
            say_shop_data_unavailable(dispatcher)
            return []
        if found is None:
            dispatcher.utter_message(text="I don't see an order from this chat yet.")
            return []
        number, status, total, email = found
        if status in PAID_OR_LATER:
            dispatcher.utter_message(text=f"Payment received: your order {number} is confirmed. Total paid: "
                                          f"{format_money(total)}. A confirmation is on its way to {email}.")
            ask_for_feedback_once(dispatcher, tracker, "purchase")
            return [SlotSet("cart_checkout_status", None), SlotSet("cart_order_number", number)]
        if status == "pending_payment":
            dispatcher.utter_message(text=f"Order {number} is still waiting for payment. Use the payment link above; "
                                          "I'll confirm here as soon as it goes through.")
        else:
            dispatcher.utter_message(text=f"Order {number} is {status.replace('_', ' ')}, so there is no payment "
                                          "to confirm.")
        return []
