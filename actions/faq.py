"""Shop FAQ answers (delivery, shipping, payment, contact, accounts, return policy) from the policy file."""
from typing import Text

from rasa_sdk import Action

from shop.policy import faq_answer

# intent -> topic in shop.policy.faq_answer; the answers live in shop/policies.yml only
FAQ_TOPIC_OF_INTENT = {
    "return_policy": "return_policy",
    "delivery_time": "delivery_time",
    "shipping_options": "shipping_options",
    "payment_methods": "payment_methods",
    "contact_info": "contact",
    "create_account": "create_account",
    "recover_password": "recover_password",
}


class ActionAnswerFaq(Action):
    """One action for every FAQ intent; a region or shipping method in the question narrows the answer."""

    def name(self) -> Text:
        return "action_answer_faq"

    async def run(self, dispatcher, tracker, domain):
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        topic = FAQ_TOPIC_OF_INTENT.get(intent, "return_policy")
        entities = {e.get("entity"): e.get("value") for e in tracker.latest_message.get("entities") or []}
        dispatcher.utter_message(text=faq_answer(topic, region=entities.get("region"),
                                                 method=entities.get("shipping_method")))
        return []
