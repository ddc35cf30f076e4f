from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from shop.settings import shop_settings


class ActionGreet(Action):
    """Greets with the shop's name, which differs per store, so it cannot live in a static response."""

    def name(self) -> Text:
        return "action_greet"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(text=greeting_text())
        return []


def greeting_text() -> Text:
    """The welcome, also said when a page gives no more specific reason to open the chat (actions/page_context.py)."""
    return (
        f"Hi, welcome to {shop_settings().name}! I'm the shop assistant. "
        "I can find products for you by type, colour and budget. What are you looking for today?"
    )
