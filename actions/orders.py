"""Order status, changes and cancellation in the chat, each behind verification (actions.verification)."""
import re
from typing import Any, Dict, List, Optional, Sequence, Text

from rasa_sdk import Action
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.feedback import ask_for_feedback_once
from actions.verification import (
    CODE_BUTTON,
    VERIFY_PROMPT,
    FormState,
    OrderFormValidation,
    Said,
    explain_not_verified,
    reset_request,
    verified_owner,
)
from shop.db import session_scope
from shop.orders import (
    MAX_LINE_QUANTITY,
    OrderRefusal,
    OrderSummary,
    cancel_order,
    change_quantity,
    change_shipping_address,
    find_order,
    format_date,
    order_summary,
    orders_for_customer,
    price_lines,
    remove_line,
)
from shop.policy import format_money, load_policy, refund_timing_text

TALK_TO_HUMAN = {"title": "Talk to a person", "payload": "/talk_to_human"}
ALL_ORDERS = re.compile(r"\ball\b.*\borders\b|\bmy orders\b|order history|orders have i|\blist\b.*orders|"
                        r"which of my orders|what have i ordered|every order", re.IGNORECASE)
LAST_ORDER = re.compile(r"\b(last|latest|most recent|previous|newest)\b", re.IGNORECASE)
CHANGE_KINDS = (
    ("remove", re.compile(r"\b(remove|delete|take\b.*\boff|drop|get rid|don'?t want)\b", re.IGNORECASE)),
    ("address", re.compile(r"\b(address|deliver|ship(ping)? to|send it to|moved|street)\b", re.IGNORECASE)),
    ("quantity", re.compile(r"\b(quantit\w*|qty|how many|amount|more|fewer|less|only \d|number of)\b", re.IGNORECASE)),
)
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10}


def order_button(summary: OrderSummary, intent: Text) -> Dict[Text, Text]:
    return {"title": f"{summary.number} ({summary.status_text})",
            "payload": f'/{intent}{{"order_number":"{summary.number}"}}'}


def status_message(summary: OrderSummary) -> Text:
    lines = [f"Order {summary.number}, placed {format_date(summary.placed_at)}, is {summary.status_text}."]
    lines += [f"- {line.text}" for line in summary.items]
    lines.append(f"Total: {format_money(summary.total_cents)}")
    if summary.carrier and summary.tracking_number:
        link = f" - track it here: {summary.tracking_url}" if summary.tracking_url else ""
        lines.append(f"Carrier: {summary.carrier}, tracking number {summary.tracking_number}{link}")
    if summary.estimated_delivery and summary.status in ("paid", "packed", "shipped"):
        lines.append(f"Estimated delivery: {format_date(summary.estimated_delivery)}")
    lines.append(summary.next_step)
    return "\n".join(line for line in lines if line)


def show_status(dispatcher: CollectingDispatcher, summary: OrderSummary) -> None:
    dispatcher.utter_message(text=status_message(summary))
    if summary.is_late:
        dispatcher.utter_message(
            text="I'm sorry your order is late. Would you like me to put you through to a person on our team?",
            buttons=[TALK_TO_HUMAN])


def words_of(text: Text) -> set:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def match_lines(text: Text, lines: Sequence[Any], label) -> List[Any]:
    """The order lines the shopper named: by title words, or by position ("the second one")."""
    said = words_of(text)
    scored = [(len(said & words_of(label(line))), line) for line in lines]
    best = max((score for score, _ in scored), default=0)
    if best:
        return [line for score, line in scored if score == best]
    for word, position in ORDINALS.items():
        if re.search(rf"\b{word}\b", text, re.IGNORECASE) and position <= len(lines):
            return [lines[position - 1]]
    bare = text.strip()
    if bare.isdigit() and 1 <= int(bare) <= len(lines):
        return [lines[int(bare) - 1]]
    return []


def quantity_in(said: Said) -> Optional[int]:
    value = said.entities.get("quantity")
    text = f"{value} " if value else said.text
    match = re.search(r"\b(\d{1,2})\b", text)
    if match:
        return int(match.group(1))
    for word, number in NUMBER_WORDS.items():
        if re.search(rf"\b{word}\b", text, re.IGNORECASE):
            return number
    return None


def confirmation(said: Said) -> Optional[Text]:
    if said.intent == "affirm" or re.match(r"\s*(yes|yeah|yep|sure|ok|okay|confirm|do it|go ahead)\b", said.text, re.I):
        return "yes"
    if said.intent == "deny" or re.match(r"\s*(no|nope|don'?t|stop|keep it)\b", said.text, re.I):
        return "no"
    return None


# -------------------------------------------------------------------------------- status

class ValidateOrderStatusForm(OrderFormValidation):
    """Verification, then the status question itself needs nothing more: which order is read from the words."""

    def form_name(self) -> Text:
        return "order_status_form"

    def topic_answered(self, said, requested, state) -> bool:
        return False

    def continue_verified(self, session, owner, said, state, dispatcher):
        if said is not None:
            if said.order_number():
                self.take_order_number(session, owner, said, None, state, dispatcher)
                state.put("order_scope", "one")
            elif ALL_ORDERS.search(said.text):
                state.put("order_scope", "all")
            elif LAST_ORDER.search(said.text):
                state.put("order_scope", "last")
        return None


class ActionOrderStatus(Action):
    """Status, items, carrier + tracking link, estimate, next step; or the list of the shopper's orders."""

    def name(self) -> Text:
        return "action_order_status"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                explain_not_verified(tracker, dispatcher)
                return reset_request()
            scope, number = tracker.get_slot("order_scope"), tracker.get_slot("order_number")
            orders = orders_for_customer(session, owner)
            if not orders:
                dispatcher.utter_message(text="I can't find any orders for you.")
                return reset_request()
            if scope == "all" or (not number and scope != "last" and len(orders) > 1):
                lines = [f"- {o.number}, placed {format_date(o.placed_at)}: {o.status_text}, "
                         f"{format_money(o.total_cents)}" for o in orders]
                dispatcher.utter_message(text=f"You have {len(orders)} orders with us:\n" + "\n".join(lines) +
                                         "\nTap one for the details.",
                                         buttons=[order_button(o, "order_status") for o in orders[:10]])
                return reset_request()
            summary = orders[0] if scope == "last" or not number else order_summary(session, number, owner_email=owner)
            show_status(dispatcher, summary)
        # A late order was just offered a person with an apology; a rating question on top would jar.
        if not summary.is_late:
            ask_for_feedback_once(dispatcher, tracker, "order_help")
        return reset_request() + [SlotSet("order_number", summary.number)]


# -------------------------------------------------------------------------------- shared asks

def candidate_orders(session: Session, owner: Text, form: Optional[Text]) -> List[OrderSummary]:
    orders = orders_for_customer(session, owner)
    wanted = {
        "order_change_form": lambda o: o.can_change_address,
        "order_cancel_form": lambda o: o.can_cancel,
        "order_return_form": lambda o: o.can_return,
    }.get(form)
    return [o for o in orders if wanted(o)] if wanted else orders


class ActionAskOrderNumber(Action):
    """Unverified: the verification question. Verified: which of their orders, as buttons."""

    def name(self) -> Text:
        return "action_ask_order_number"

    async def run(self, dispatcher, tracker, domain):
        form = (tracker.active_loop or {}).get("name")
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                dispatcher.utter_message(text=VERIFY_PROMPT, buttons=[CODE_BUTTON])
                return []
            orders = candidate_orders(session, owner, form)
        if not orders:
            dispatcher.utter_message(text="Which order is it about? Please type its number (like SH-100001).")
            return []
        dispatcher.utter_message(text="Which order is it about?",
                                 buttons=[order_button(o, "inform") for o in orders[:8]])
        return []


class ActionAskOrderConfirm(Action):
    """The summary of the pending change or cancellation, with yes/no."""

    def name(self) -> Text:
        return "action_ask_order_confirm"

    async def run(self, dispatcher, tracker, domain):
        form = (tracker.active_loop or {}).get("name")
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                return []
            number = tracker.get_slot("order_number")
            if form == "order_cancel_form":
                text = cancel_summary(session, number, owner)
            else:
                text = change_summary(session, number, owner, tracker.get_slot("order_change_kind"),
                                      tracker.get_slot("order_change_item"),
                                      tracker.get_slot("order_change_quantity"),
                                      tracker.get_slot("order_new_address"))
        dispatcher.utter_message(text=text, buttons=[{"title": "Yes, go ahead", "payload": "/affirm"},
                                                     {"title": "No, leave it", "payload": "/deny"}])
        return []


# -------------------------------------------------------------------------------- cancel

def cancel_summary(session: Session, number: Text, owner: Text) -> Text:
    summary = order_summary(session, number, owner_email=owner)
    items = ", ".join(f"{line.quantity} x {line.product_title}" for line in summary.items)
    if summary.status == "pending_payment":
        money = "It hasn't been paid, so nothing will be charged."
    else:
        money = (f"You'll get {format_money(summary.total_cents)} back. "
                 + refund_timing_text("cancellation", load_policy()))
    return f"Cancel order {number} ({items})? {money} Shall I go ahead?"


class ValidateOrderCancelForm(OrderFormValidation):
    def form_name(self) -> Text:
        return "order_cancel_form"

    def topic_answered(self, said, requested, state) -> bool:
        if requested == "order_confirm":
            return confirmation(said) is not None
        return requested == "order_number" and bool(said.text.strip())

    def continue_verified(self, session, owner, said, state, dispatcher):
        self.take_order_number(session, owner, said, state.requested, state, dispatcher)
        number = state.get("order_number")
        if not number:
            return "order_number"
        summary = order_summary(session, number, owner_email=owner)
        if not summary.can_cancel:
            dispatcher.utter_message(text=cancel_refusal(summary),
                                     buttons=[{"title": "Start a return", "payload": "/start_return"}]
                                     if summary.status in ("shipped", "delivered") else [])
            state.put("order_outcome", "refused")
            return None
        if said is not None and state.requested == "order_confirm":
            state.put("order_confirm", confirmation(said))
        return None if state.get("order_confirm") else "order_confirm"


def cancel_refusal(summary: OrderSummary) -> Text:
    if summary.status == "cancelled":
        return f"Order {summary.number} is already cancelled."
    window = load_policy().returns.window_days
    if summary.status == "shipped":
        return (f"Order {summary.number} has already shipped with {summary.carrier or 'the carrier'}, so it can't be "
                f"cancelled any more. Once it arrives you can return anything you don't want within {window} days "
                "of delivery, and I can start that return for you.")
    if summary.status == "delivered":
        return (f"Order {summary.number} was delivered, so it can't be cancelled. You can return items within "
                f"{window} days of delivery instead: shall I start a return?")
    return f"Order {summary.number} is {summary.status_text}, so it can't be cancelled."


class ActionCancelOrder(Action):
    def name(self) -> Text:
        return "action_cancel_order"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                explain_not_verified(tracker, dispatcher)
                return reset_request()
            if tracker.get_slot("order_outcome") in ("refused", "stopped"):
                return reset_request()
            if tracker.get_slot("order_confirm") != "yes":
                dispatcher.utter_message(text="OK, I've left the order as it is.")
                return reset_request()
            try:
                done = cancel_order(session, tracker.get_slot("order_number"), owner_email=owner)
            except OrderRefusal as refusal:
                dispatcher.utter_message(text=refusal.message)
                return reset_request()
        dispatcher.utter_message(text=done.message)
        return reset_request()


# -------------------------------------------------------------------------------- change

def parse_address(text: Text) -> Optional[Dict[Text, Text]]:
    """'12 Oak Street, Portland, 97209(, US)' -> street, city, postcode (and country when given)."""
    from actions.verification import POSTCODE

    policy = load_policy()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    country = None
    if len(parts) > 2 and policy.shipping.resolve_country(parts[-1]):
        country = parts.pop()
    match = POSTCODE.search(", ".join(parts[1:])) if len(parts) > 1 else None
    if len(parts) < 2 or not match:
        return None
    postcode = match.group(1)
    rest = [re.sub(r"\s+", " ", p.replace(postcode, "")).strip(" ,") for p in parts[1:]]
    city = ", ".join(p for p in rest if p)
    if not city:
        return None
    return {"address_line": parts[0], "city": city, "postcode": postcode, "country": country}


def address_text(address: Dict[Text, Text]) -> Text:
    return ", ".join(v for v in (address.get("address_line"), address.get("city"), address.get("postcode"),
                                 address.get("country")) if v)


def change_summary(session: Session, number: Text, owner: Text, kind: Optional[Text], item_id: Optional[Text],
                   quantity: Optional[Text], address: Optional[Dict]) -> Text:
    order = find_order(session, number, owner_email=owner)
    if kind == "address":
        return f"Deliver order {number} to {address_text(address or {})} instead? Shall I go ahead?"
    item = next(i for i in order.items if str(i.id) == str(item_id))
    new_qty = 0 if kind == "remove" else int(quantity)
    quantities = {i.id: i.quantity for i in order.items}
    quantities[item.id] = new_qty
    totals = price_lines(session, order, quantities)
    what = (f"Remove {item.product_title} from order {number}" if new_qty == 0
            else f"Change {item.product_title} on order {number} from {item.quantity} to {new_qty}")
    return (f"{what}? The new total would be {format_money(totals.total_cents)} "
            f"(now {format_money(order.total_cents)}). Shall I go ahead?")


class ValidateOrderChangeForm(OrderFormValidation):
    def form_name(self) -> Text:
        return "order_change_form"

    def topic_answered(self, said, requested, state) -> bool:
        if requested == "order_confirm":
            return confirmation(said) is not None
        return requested is not None and bool(said.text.strip() or said.entities)

    def continue_verified(self, session, owner, said, state, dispatcher):
        if state.get("order_number") is None or (said is not None and said.order_number()):
            self.take_order_number(session, owner, said, state.requested, state, dispatcher)
        number = state.get("order_number")
        if not number:
            return "order_number"
        summary = order_summary(session, number, owner_email=owner)
        if not summary.can_change_address:
            dispatcher.utter_message(text=change_refusal(summary),
                                     buttons=[{"title": "Start a return", "payload": "/start_return"}]
                                     if summary.status in ("shipped", "delivered") else [])
            state.put("order_outcome", "refused")
            return None
        if said is not None:
            self._read(said, state, summary, dispatcher)
        kind = state.get("order_change_kind")
        if kind is None:
            return "order_change_kind"
        if kind in ("quantity", "remove") and not summary.can_change_items:
            dispatcher.utter_message(
                text=f"Order {number} is already packed, so I can't change its items any more. I can still change "
                     "its delivery address or cancel it before it ships.")
            state.clear("order_change_kind")
            return "order_change_kind"
        if kind == "address":
            return None if state.get("order_confirm") else (
                "order_new_address" if not state.get("order_new_address") else "order_confirm")
        if not state.get("order_change_item"):
            return "order_change_item"
        if kind == "quantity" and state.get("order_change_quantity") is None:
            return "order_change_quantity"
        return None if state.get("order_confirm") else "order_confirm"

    @staticmethod
    def _read(said: Said, state: FormState, summary: OrderSummary, dispatcher: CollectingDispatcher) -> None:
        """Whatever the message says about the change: its kind, the new address, the item, the quantity."""
        slot = state.requested
        if slot == "order_confirm":
            answer = confirmation(said)
            if answer:
                state.put("order_confirm", answer)
            return
        if state.get("order_change_kind") is None:
            for kind, pattern in CHANGE_KINDS:
                if pattern.search(said.text):
                    state.put("order_change_kind", kind)
                    break
            else:
                if slot == "order_change_kind" and said.text.strip():
                    dispatcher.utter_message(text="Sorry, I can change the delivery address, a quantity, or remove "
                                                  "an item. Which would you like?")
                return
            if slot == "order_change_kind":
                slot = None
        kind = state.get("order_change_kind")
        if kind == "address" and slot in ("order_new_address", None) and said.text.strip():
            address = parse_address(said.text)
            if address:
                state.put("order_new_address", address)
            elif slot == "order_new_address":
                dispatcher.utter_message(text="I couldn't read that address. Please write it as street, town, "
                                              "postcode (and the country if it's a different one), separated by "
                                              "commas, like: 12 Oak Street, Portland, 97209")
            return
        if kind in ("quantity", "remove") and not state.get("order_change_item"):
            lines = list(summary.items)
            named = said.entities.get("item") or said.text
            found = match_lines(named, lines, lambda line: line.product_title + " " + line.variant_label)
            if len(found) == 1:
                state.put("order_change_item", str(found[0].id))
            elif slot == "order_change_item" and said.text.strip():
                dispatcher.utter_message(text=f"I can't find that item on order {summary.number}. It has: "
                                              + "; ".join(line.text for line in lines) + ".")
                return
        if kind == "quantity" and state.get("order_change_item") and slot in ("order_change_quantity", None):
            quantity = quantity_in(said)
            if quantity is not None and 1 <= quantity <= MAX_LINE_QUANTITY:
                state.put("order_change_quantity", str(quantity))
            elif slot == "order_change_quantity":
                dispatcher.utter_message(text=f"Please give a quantity between 1 and {MAX_LINE_QUANTITY} "
                                              "(or ask me to remove the item).")


def change_refusal(summary: OrderSummary) -> Text:
    if summary.status == "cancelled":
        return f"Order {summary.number} was cancelled, so it can't be changed."
    window = load_policy().returns.window_days
    if summary.status == "shipped":
        return (f"Order {summary.number} has already shipped with {summary.carrier or 'the carrier'}, so I can't "
                "change its address or items any more: the parcel is with the carrier. Once it arrives you can "
                f"return anything you don't want within {window} days of delivery.")
    return (f"Order {summary.number} was already delivered, so it can't be changed. You can return items within "
            f"{window} days of delivery instead.")


class ActionChangeOrder(Action):
    def name(self) -> Text:
        return "action_change_order"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                explain_not_verified(tracker, dispatcher)
                return reset_request()
            if tracker.get_slot("order_outcome") in ("refused", "stopped"):
                return reset_request()
            if tracker.get_slot("order_confirm") != "yes":
                dispatcher.utter_message(text="OK, I haven't changed anything.")
                return reset_request()
            number, kind = tracker.get_slot("order_number"), tracker.get_slot("order_change_kind")
            try:
                if kind == "address":
                    address = tracker.get_slot("order_new_address") or {}
                    done = change_shipping_address(session, number, owner_email=owner, **address)
                elif kind == "remove":
                    done = remove_line(session, number, int(tracker.get_slot("order_change_item")), owner_email=owner)
                else:
                    done = change_quantity(session, number, int(tracker.get_slot("order_change_item")),
                                           int(tracker.get_slot("order_change_quantity")), owner_email=owner)
            except OrderRefusal as refusal:
                dispatcher.utter_message(text=refusal.message)
                return reset_request()
        dispatcher.utter_message(text=done.message)
        return reset_request()


class ActionAskOrderChangeKind(Action):
    def name(self) -> Text:
        return "action_ask_order_change_kind"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="What would you like to change on the order?", buttons=[
            {"title": "The delivery address", "payload": "change the delivery address"},
            {"title": "A quantity", "payload": "change a quantity"},
            {"title": "Remove an item", "payload": "remove an item"}])
        return []


class ActionAskOrderNewAddress(Action):
    def name(self) -> Text:
        return "action_ask_order_new_address"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="What's the new delivery address? Please write it as street, town, postcode "
                                      "(and the country if it changes), like: 12 Oak Street, Portland, 97209")
        return []


class ActionAskOrderChangeItem(Action):
    def name(self) -> Text:
        return "action_ask_order_change_item"

    async def run(self, dispatcher, tracker, domain):
        with session_scope() as session:
            owner = verified_owner(session, tracker)
            if owner is None:
                return []
            summary = order_summary(session, tracker.get_slot("order_number"), owner_email=owner)
        dispatcher.utter_message(text="Which item?", buttons=[
            {"title": line.text, "payload": line.product_title} for line in summary.items])
        return []


class ActionAskOrderChangeQuantity(Action):
    def name(self) -> Text:
        return "action_ask_order_change_quantity"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"How many would you like instead (1 to {MAX_LINE_QUANTITY})?")
        return []
