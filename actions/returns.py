"""Returns (items, reason, refund/exchange/store credit -> RMA and label link) and refund status."""
import re
from typing import Dict, Optional, Text

from rasa_sdk import Action
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.feedback import ask_for_feedback_once
from actions.orders import match_lines, quantity_in
from actions.verification import (
    FormState,
    OrderFormValidation,
    Said,
    explain_not_verified,
    reset_request,
    verified_owner,
)
from shop.db import session_scope
from shop.orders import format_date
from shop.policy import load_policy
from shop.returns import RESOLUTION_TEXT, ReturnEligibility, ReturnRefusal, refund_status, refunds_for_customer
from shop.returns import return_eligibility, start_return

ALL_ITEMS = re.compile(r"\b(all|everything|whole order|both|the lot)\b", re.IGNORECASE)
RESOLUTIONS = (
    ("store_credit", re.compile(r"\b(store credit|credit|voucher|gift card)\b", re.IGNORECASE)),
    ("exchange", re.compile(r"\b(exchange|swap|replace|replacement|different size|another size)\b", re.IGNORECASE)),
    ("refund", re.compile(r"\b(refund|money back|my money|reimburse)\b", re.IGNORECASE)),
)


def eligibility_text(assessment: ReturnEligibility) -> Text:
    lines = []
    for item in assessment.items:
        if item.eligible:
            lines.append(f"- {item.label}: can be returned (up to {item.returnable_quantity})")
        else:
            lines.append(f"- {item.label}: can't be returned. {item.reason}")
    deadline = f" until {format_date(assessment.deadline)}" if assessment.deadline else ""
    return f"Order {assessment.order_number} can be returned{deadline}:\n" + "\n".join(lines)


class ValidateOrderReturnForm(OrderFormValidation):
    """Order, then items (each checked against the policy), reason, and refund/exchange/store credit."""

    def form_name(self) -> Text:
        return "order_return_form"

    def topic_answered(self, said, requested, state) -> bool:
        return requested is not None and bool(said.text.strip() or said.entities)

    def continue_verified(self, session, owner, said, state, dispatcher):
        if state.get("order_number") is None or (said is not None and said.order_number()):
            self.take_order_number(session, owner, said, state.requested, state, dispatcher)
        number = state.get("order_number")
        if not number:
            return "order_number"
        assessment = return_eligibility(session, number, owner_email=owner)
        if not assessment.any_eligible:
            dispatcher.utter_message(text=assessment.message + " " + self._instead(assessment))
            state.put("order_outcome", "refused")
            return None
        if said is not None:
            self._read(said, state, assessment, dispatcher)
        if not state.get("order_return_items"):
            return "order_return_items"
        if not state.get("order_return_reason"):
            return "order_return_reason"
        if not state.get("order_return_resolution"):
            return "order_return_resolution"
        return None

    @staticmethod
    def _instead(assessment: ReturnEligibility) -> Text:
        if assessment.status in ("pending_payment", "paid", "packed"):
            return "It hasn't shipped yet, so you can still cancel it instead."
        if assessment.status == "shipped":
            return "Once it's delivered, I can start the return for you."
        return "If an item arrived damaged or wrong, please contact us and we'll sort it out."

    @staticmethod
    def _read(said: Said, state: FormState, assessment: ReturnEligibility, dispatcher: CollectingDispatcher) -> None:
        slot = state.requested
        if slot == "order_return_items" or (slot is None and not state.get("order_return_items")):
            chosen = ValidateOrderReturnForm._items(said, assessment, dispatcher, slot == "order_return_items")
            if chosen:
                state.put("order_return_items", chosen)
            return
        if slot == "order_return_reason":
            reason = said.entities.get("return_reason") or said.text.strip()
            if reason:
                state.put("order_return_reason", reason[:255])
            return
        if slot == "order_return_resolution":
            choice = said.entities.get("resolution")
            if choice not in RESOLUTION_TEXT:
                choice = next((key for key, pattern in RESOLUTIONS if pattern.search(said.text)), None)
            if choice in load_policy().returns.resolutions:
                state.put("order_return_resolution", choice)
            else:
                dispatcher.utter_message(text="Would you like a refund, an exchange or store credit?")

    @staticmethod
    def _items(said: Said, assessment: ReturnEligibility, dispatcher: CollectingDispatcher,
               asked: bool) -> Optional[Dict[Text, int]]:
        eligible = list(assessment.eligible_items)
        if ALL_ITEMS.search(said.text):
            return {str(i.order_item_id): i.returnable_quantity for i in eligible}
        named = said.entities.get("item") or said.text
        found = match_lines(named, list(assessment.items), lambda item: item.label)
        if len(found) != 1:
            if asked and said.text.strip():
                dispatcher.utter_message(
                    text=f"I can't find that on order {assessment.order_number}. It has: "
                         + "; ".join(i.label for i in assessment.items) + ". Which of these would you like to return?")
            return None
        item = found[0]
        if not item.eligible:
            dispatcher.utter_message(text=f"{item.label} can't be returned: {item.reason}")
            return None
        wanted = quantity_in(said) if said.entities.get("quantity") else None
        quantity = min(wanted or item.returnable_quantity, item.returnable_quantity)
        return {str(item.order_item_id): quantity}


class ActionStartReturn(Action):
    def name(self) -> Text:
        return "action_start_return"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                explain_not_verified(tracker, dispatcher)
                return reset_request()
            if tracker.get_slot("order_outcome") in ("refused", "stopped"):
                return reset_request()
            try:
                started = start_return(session, tracker.get_slot("order_number"),
                                       tracker.get_slot("order_return_items") or {},
                                       reason=tracker.get_slot("order_return_reason") or "",
                                       resolution=tracker.get_slot("order_return_resolution") or "refund",
                                       owner_email=owner)
            except ReturnRefusal as refusal:
                dispatcher.utter_message(text=refusal.message)
                return reset_request()
        dispatcher.utter_message(text=started.message,
                                 buttons=[{"title": "Print the return label", "payload": started.label_url}])
        ask_for_feedback_once(dispatcher, tracker, "return")
        return reset_request()


class ActionAskOrderReturnItems(Action):
    def name(self) -> Text:
        return "action_ask_order_return_items"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                return []
            assessment = return_eligibility(session, tracker.get_slot("order_number"), owner_email=owner)
        buttons = [{"title": item.label, "payload": item.label} for item in assessment.eligible_items]
        if len(buttons) > 1:
            buttons.append({"title": "All of them", "payload": "all of them"})
        dispatcher.utter_message(text=eligibility_text(assessment) + "\nWhich items would you like to return?",
                                 buttons=buttons)
        return []


class ActionAskOrderReturnReason(Action):
    def name(self) -> Text:
        return "action_ask_order_return_reason"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="What's the reason for the return?", buttons=[
            {"title": title, "payload": title} for title in ("Too small", "Too big", "Damaged", "Wrong item",
                                                             "Changed my mind")])
        return []


class ActionAskOrderReturnResolution(Action):
    def name(self) -> Text:
        return "action_ask_order_return_resolution"

    async def run(self, dispatcher, tracker, domain):
        policy = load_policy()
        titles = {"refund": "Refund", "exchange": "Exchange", "store_credit": "Store credit"}
        choices = [RESOLUTION_TEXT[r] for r in policy.returns.resolutions]
        options = ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
        dispatcher.utter_message(
            text=f"Would you prefer {options}? An exchange gets you the right item quickly; store credit is "
                 "available as soon as we receive the return.",
            buttons=[{"title": titles[r], "payload": titles[r].lower()} for r in policy.returns.resolutions])
        return []


# -------------------------------------------------------------------------------- refunds

class ValidateOrderRefundForm(OrderFormValidation):
    """Verification only: the refunds of one order (when named) or of all the shopper's orders."""

    def form_name(self) -> Text:
        return "order_refund_form"

    def topic_answered(self, said, requested, state) -> bool:
        return False

    def continue_verified(self, session, owner, said, state, dispatcher):
        if said is not None and said.order_number():
            self.take_order_number(session, owner, said, None, state, dispatcher)
            state.put("order_scope", "one")
        return None


class ActionRefundStatus(Action):
    def name(self) -> Text:
        return "action_refund_status"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                explain_not_verified(tracker, dispatcher)
                return reset_request()
            number = tracker.get_slot("order_number")
            if number:
                status = refund_status(session, number, owner_email=owner)
                dispatcher.utter_message(text=status.message)
                return reset_request()
            refunds = refunds_for_customer(session, owner)
        if not refunds:
            dispatcher.utter_message(text="There are no refunds on your orders.")
        else:
            dispatcher.utter_message(text="Your refunds:\n" + "\n".join(f"- {r.text}" for r in refunds))
        return reset_request() + [SlotSet("order_number", number)]
