from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import queue_for_a_person
from shop.handoff import support_settings

# What each intent means to a shopper, so the fallback can ask "Did you mean ...?" in plain words.
INTENT_DESCRIPTIONS = {
    "greet": "say hello",
    "goodbye": "say goodbye",
    "thank": "say thanks",
    "help": "see what I can do",
    "search_product": "search for a product",
    "refine_search": "change your last search",
    "show_more": "see more results",
    "product_details": "know more about a product",
    "check_availability": "check if something is in stock",
    "ask_reviews": "see what reviewers say",
    "recommend": "get a recommendation",
    "set_preference": "tell me your size or colours you like",
    "talk_to_human": "talk to a person from our team",
    "complaint": "make a complaint",
}


class ActionDefaultAskAffirmation(Action):
    """First stage of the two-stage fallback: offer the most likely meaning instead of guessing."""

    def name(self) -> Text:
        return "action_default_ask_affirmation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        ranking = [
            entry["name"]
            for entry in tracker.latest_message.get("intent_ranking", [])
            if entry.get("name") in INTENT_DESCRIPTIONS
        ]
        if not ranking:
            return await ActionDefaultAskRephrase().run(dispatcher, tracker, domain)
        best = ranking[0]
        dispatcher.utter_message(
            text=f"Sorry, I'm not sure I understood. Did you want to {INTENT_DESCRIPTIONS[best]}?",
            buttons=[
                {"title": "Yes", "payload": f"/{best}"},
                {"title": "No", "payload": "/out_of_scope"},
            ],
        )
        return []


class ActionDefaultAskRephrase(Action):
    """Second stage of the two-stage fallback."""

    def name(self) -> Text:
        return "action_default_ask_rephrase"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(text="Sorry, I didn't quite get that. Could you say it another way?")
        return []


LEAVE_A_MESSAGE_PAYLOAD = '/talk_to_human{"handoff_reason": "repeated_fallback"}'


def misunderstood_in_a_row(tracker: Tracker) -> int:
    """How many of the shopper's latest messages the bot could not classify, back to the last understood one.

    Clicks on the fallback's own "No" button (out_of_scope) neither count nor break the run.
    """
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent == "nlu_fallback":
            count += 1
        elif intent != "out_of_scope":
            break
    return count


class ActionDefaultFallback(Action):
    """Last stage: admit it, show an example, and forget the message so it doesn't steer the dialogue.

    Two misunderstood messages in a row mean the shopper needs a person: the chat is queued for one.
    """

    def name(self) -> Text:
        return "action_default_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        if misunderstood_in_a_row(tracker) >= 2:
            if support_settings().is_open():
                dispatcher.utter_message(text="I'm sorry I keep misunderstanding you.")
                return queue_for_a_person(dispatcher, tracker, "repeated_fallback") + [UserUtteranceReverted()]
            dispatcher.utter_message(
                text="I'm sorry I keep misunderstanding you. Nobody from our team is on duty right now, "
                     "but you can leave them a message.",
                buttons=[{"title": "Leave a message", "payload": LEAVE_A_MESSAGE_PAYLOAD}],
            )
            return [UserUtteranceReverted()]
        dispatcher.utter_message(
            text=(
                "I'm still not sure what you mean. Try something like "
                '"show me red sneakers under $80", or type "help" to see what I can do.'
            )
        )
        return [UserUtteranceReverted()]
