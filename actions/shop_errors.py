"""The one answer to a shop database that is down or too slow: an honest sentence and a person.

Every custom action that reads or writes shop data gets it, in one of two ways:
- actions that catch SQLAlchemyError themselves (to keep a form's answers or a slot) call
  `say_shop_data_unavailable`;
- any SQLAlchemyError that leaves an action is answered by the action server itself
  (`shop_data_unavailable_reply`, installed by ops/action_server.py), so no action can end in
  Rasa's silence or a stack trace.
A slow database raises too: shop.db gives every connection and statement SHOP_DB_TIMEOUT_SECONDS.
The wording is the one the action balancer uses when no action server answers at all
(ops/action_fallback.py, SHOP_UNAVAILABLE_MESSAGE), and it is said once per shopper turn.
"""
from __future__ import annotations

from typing import Any, Dict

from rasa_sdk.executor import CollectingDispatcher

from ops.action_fallback import TALK_TO_A_PERSON, unavailable_message, unavailable_reply


def say_shop_data_unavailable(dispatcher: CollectingDispatcher) -> None:
    dispatcher.utter_message(text=unavailable_message(), buttons=[TALK_TO_A_PERSON])


def shop_data_unavailable_reply(action_call: Dict[str, Any]) -> Dict[str, Any]:
    """The action server's answer to `action_call` (Rasa's POST /webhook body) whose action failed
    on the shop database: the honest message, and the turn ends there with the conversation as it was."""
    return unavailable_reply(action_call)
