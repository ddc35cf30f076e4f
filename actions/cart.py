"""The cart in the chat: add shown products (asking for a missing size or colour), view, remove, change quantities.

The cart lives in the shop database under the conversation id (tracker.sender_id), so it survives reloads and
restarts; shop/carts.py holds every rule (stock, the 20-item limit, whole quantities) and its refusals.
"""
import logging
import re
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Text, Tuple

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.references import resolve_reference
from actions.shop_errors import say_shop_data_unavailable
from shop.carts import CartError, CartLine, CartView, add_item, cart_view, remove_item, update_quantity
from shop.catalog import get_product, summaries_for_handles
from shop.db import session_scope
from shop.models import Product, Variant
from shop.products import normalise_size

logger = logging.getLogger(__name__)

CHECKOUT_BUTTON = {"title": "Check out", "payload": "/checkout"}
ORDINAL_WORDS = {
    "first": "1", "1st": "1", "second": "2", "2nd": "2", "third": "3", "3rd": "3", "fourth": "4", "4th": "4",
    "fifth": "5", "5th": "5", "last": "last",
}
# Words that say nothing about which cart line is meant ("remove the red sneakers from my cart").
FILLER_WORDS = {
    "remove", "delete", "take", "out", "off", "drop", "from", "my", "the", "cart", "basket", "bag", "please",
    "change", "make", "set", "update", "quantity", "to", "of", "i", "want", "only", "just", "one", "ones", "it",
    "a", "an", "and", "in", "size", "colour", "color", "pair", "pairs", "items", "item", "can", "you", "get", "rid",
}


def latest_entity(tracker: Tracker, name: Text) -> Optional[Text]:
    value = next(tracker.get_latest_entity_values(name), None)
    return str(value).strip()[:60] if value not in (None, "") else None


def say_cart(dispatcher: CollectingDispatcher, view: CartView, *, lead: Text = "") -> None:
    """The change made (if any) and the whole cart with line totals; buttons to check out on rich channels."""
    text = "\n".join(part for part in (lead or view.message, view.text()) if part)
    dispatcher.utter_message(text=text, buttons=[] if view.is_empty else [CHECKOUT_BUTTON])


# ------------------------------------------------------------------------------------ variants


def _in_stock(product: Product) -> List[Variant]:
    return [v for v in product.variants if v.stock > 0] if product.published else []


def _fits(variant: Variant, size: Optional[Text], color: Optional[Text]) -> bool:
    if size and normalise_size(variant.size).lower() != normalise_size(size).lower():
        return False
    if color and (variant.color or "").lower() != color.lower():
        return False
    return True


def _words_in(text: Text) -> List[Text]:
    return re.findall(r"[a-z0-9.]+", text.lower())


def choice_from_text(product: Product, text: Text) -> Dict[Text, Text]:
    """The size and/or colour of this product named in a free-text answer ("42", "the red one", "black, M")."""
    words = _words_in(text)
    found: Dict[Text, Text] = {}
    colors = {(v.color or "").lower(): v.color for v in product.variants if v.color}
    for color_key, color in colors.items():
        if color_key and all(part in words for part in color_key.split()):
            found["color"] = color
    sizes = {normalise_size(v.size).lower(): v.size for v in product.variants if v.size}
    for word in words + [text.strip().lower()]:
        key = normalise_size(word).lower()
        if key in sizes:
            found["size"] = sizes[key]
    return found


def missing_dimension(candidates: Sequence[Variant]) -> Text:
    """Which question tells the candidates apart: size first, as shoppers know it best."""
    return "size" if len({v.size for v in candidates}) > 1 else "color"


def options_text(candidates: Sequence[Variant], dimension: Text) -> List[Text]:
    values = [getattr(v, dimension) for v in candidates]
    return list(dict.fromkeys(v for v in values if v))


def variant_question(product: Product, pending: Dict[Text, Any]) -> Tuple[Text, List[Text]]:
    """The question for the missing size or colour, offering only what is in stock with the choices made."""
    candidates = [v for v in _in_stock(product) if _fits(v, pending.get("size"), pending.get("color"))]
    dimension = missing_dimension(candidates)
    options = options_text(candidates, dimension)
    noun = "size" if dimension == "size" else "colour"
    return f"Which {noun} would you like for {product.title}? In stock: {', '.join(options)}.", options


def _variant_name(variant: Variant) -> Text:
    parts = [p for p in (variant.color, variant.size) if p]
    return " ".join(parts)


# ------------------------------------------------------------------------------------ adding


class ActionAddToCart(Action):
    """Adds the product meant ("the second one", "it", a card's button) in the variant asked for.

    When the size or colour is missing and matters, the pending request is kept in `cart_pending` and the
    cart_variant_form asks for it (offering only variants in stock); the form then runs this action again.
    """

    def name(self) -> Text:
        return "action_add_to_cart"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                return self._add(session, dispatcher, tracker)
        except SQLAlchemyError:
            logger.exception("Adding to the cart failed")
            say_shop_data_unavailable(dispatcher)
            return [SlotSet("cart_add_status", "refused")]

    def _pending_request(self, session: Session, tracker: Tracker) -> Optional[Dict[Text, Any]]:
        """What to add: after the variant form, the pending request plus the choice; else from this message."""
        pending = tracker.get_slot("cart_pending")
        if isinstance(pending, dict) and tracker.get_slot("cart_variant_choice"):
            return dict(pending)
        handle = latest_entity(tracker, "product_handle")
        if handle is None:
            shown = summaries_for_handles(session, tracker.get_slot("shown_products") or [])
            handle = resolve_reference(tracker, shown, by_description=True)
        if handle is None:
            return None
        # The colour and size of the search the product came from, used when they fit and nothing else is said.
        hints = {"size": tracker.get_slot("size"), "color": tracker.get_slot("color")}
        return {"handle": handle, "quantity": latest_entity(tracker, "quantity") or "1",
                "size": latest_entity(tracker, "size"), "color": latest_entity(tracker, "color"), "hints": hints}

    def _add(self, session: Session, dispatcher: CollectingDispatcher, tracker: Tracker) -> List[Dict]:
        refused = [SlotSet("cart_add_status", "refused"), SlotSet("cart_pending", None),
                   SlotSet("cart_variant_choice", None)]
        request = self._pending_request(session, tracker)
        if request is None:
            dispatcher.utter_message(text="Which product would you like to add? Search for something and I'll show "
                                          "you some, then say for example \"add the second one\".")
            return refused
        product = get_product(session, request["handle"])
        if product is None or not product.published:
            dispatcher.utter_message(text="Sorry, that product isn't in our catalogue any more.")
            return refused
        in_stock = _in_stock(product)
        if not in_stock:
            dispatcher.utter_message(text=f"Sorry, {product.title} is sold out in every size and colour.")
            return refused
        size, color = request.get("size"), request.get("color")
        if size and not any(_fits(v, size, None) for v in product.variants):
            dispatcher.utter_message(text=f"{product.title} doesn't come in size {size}.")
            size = None
        if color and not any(_fits(v, None, color) for v in product.variants):
            dispatcher.utter_message(text=f"{product.title} doesn't come in {color}.")
            color = None
        hints = request.get("hints") or {}
        if not size and hints.get("size") and any(_fits(v, hints["size"], color) for v in in_stock):
            size = hints["size"]
        if not color and hints.get("color") and any(_fits(v, size, hints["color"]) for v in in_stock):
            color = hints["color"]
        candidates = [v for v in in_stock if _fits(v, size, color)]
        if not candidates:
            wanted = " ".join(p for p in (color, f"size {size}" if size else "") if p)
            dispatcher.utter_message(text=f"Sorry, {product.title} in {wanted} is sold out.")
            size, color = None, None
            candidates = in_stock
        if len(candidates) > 1:
            pending = {"handle": product.handle, "quantity": request.get("quantity") or "1",
                       "size": size, "color": color}
            return [SlotSet("cart_pending", pending), SlotSet("cart_variant_choice", None),
                    SlotSet("current_product", product.handle), SlotSet("cart_add_status", "needs_variant")]
        try:
            view = add_item(session, tracker.sender_id, candidates[0].id, request.get("quantity") or "1")
        except CartError as error:
            dispatcher.utter_message(text=error.message)
            return refused + [SlotSet("current_product", product.handle)]
        say_cart(dispatcher, view)
        return [SlotSet("cart_add_status", "added"), SlotSet("cart_pending", None),
                SlotSet("cart_variant_choice", None), SlotSet("current_product", product.handle)]


class ActionAskCartVariantChoice(Action):
    def name(self) -> Text:
        return "action_ask_cart_variant_choice"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        pending = tracker.get_slot("cart_pending") or {}
        try:
            with session_scope() as session:
                product = get_product(session, pending.get("handle", ""))
                if product is None:
                    dispatcher.utter_message(text="Which size or colour would you like?")
                    return []
                question, options = variant_question(product, pending)
        except SQLAlchemyError:
            logger.exception("Reading variants failed")
            say_shop_data_unavailable(dispatcher)
            return []
        dispatcher.utter_message(text=question, buttons=[{"title": o, "payload": o} for o in options[:10]])
        return []


class ValidateCartVariantForm(FormValidationAction):
    """A free-text answer ("42", "red", "black in M") must name an in-stock variant of the pending product."""

    def name(self) -> Text:
        return "validate_cart_variant_form"

    async def validate_cart_variant_choice(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                           domain: DomainDict) -> Dict[Text, Any]:
        if value in (None, ""):
            # action_add_to_cart's reset of the slot, which Rasa hands over when the form starts: no answer yet
            return {"cart_variant_choice": None}
        pending = dict(tracker.get_slot("cart_pending") or {})
        with session_scope() as session:
            product = get_product(session, pending.get("handle", ""))
            if product is None:
                return {"cart_variant_choice": "none"}
            choice = choice_from_text(product, str(value))
            for name in ("size", "color"):
                if latest_entity(tracker, name) and name not in choice:
                    choice[name] = latest_entity(tracker, name)
            if not choice:
                question, _ = variant_question(product, pending)
                dispatcher.utter_message(text=f"Sorry, I didn't catch that. {question}")
                return {"cart_variant_choice": None}
            merged = {**pending, **choice}
            candidates = [v for v in _in_stock(product) if _fits(v, merged.get("size"), merged.get("color"))]
            if not candidates:
                wanted = " ".join(p for p in (choice.get("color"), choice.get("size")) if p)
                question, _ = variant_question(product, pending)
                dispatcher.utter_message(text=f"Sorry, {wanted} is sold out. {question}")
                return {"cart_variant_choice": None}
            if len(candidates) > 1:
                # One question answered, another one left (e.g. the colour after the size).
                return {"cart_variant_choice": None, "cart_pending": merged}
            chosen = candidates[0]
            return {"cart_variant_choice": _variant_name(chosen) or "default",
                    "cart_pending": {**merged, "size": chosen.size or None, "color": chosen.color or None}}


# ------------------------------------------------------------------------------------ cart lines


def _line_by_position(tracker: Tracker, lines: Sequence[CartLine]) -> Optional[CartLine]:
    position = latest_entity(tracker, "position")
    text_words = _words_in(tracker.latest_message.get("text") or "")
    if position is None:
        position = next((ORDINAL_WORDS[w] for w in text_words if w in ORDINAL_WORDS), None)
    if position is None:
        return None
    position = ORDINAL_WORDS.get(position.lower(), position)
    if position == "last":
        return lines[-1]
    if position.isdigit() and 1 <= int(position) <= len(lines):
        return lines[int(position) - 1]
    return None


def line_meant(session: Session, tracker: Tracker, lines: Sequence[CartLine]) -> Optional[CartLine]:
    """The cart line meant: by position in the cart ("the second item"), by name words, by the product
    talked about last ("it"), or the only line."""
    if not lines:
        return None
    by_position = _line_by_position(tracker, lines)
    if by_position is not None:
        return by_position
    words = {w for w in _words_in(tracker.latest_message.get("text") or "") if w not in FILLER_WORDS
             and not w.isdigit()}
    if words:
        scored = []
        for line in lines:
            label_words = set(_words_in(line.label))
            hits = sum(1 for w in words if w in label_words or w.rstrip("s") in label_words)
            if hits:
                scored.append((hits, line))
        if scored:
            scored.sort(key=lambda pair: -pair[0])
            if len(scored) == 1 or scored[0][0] > scored[1][0]:
                return scored[0][1]
            return None
    current = tracker.get_slot("current_product")
    if current:
        product = get_product(session, current)
        matching = [l for l in lines if product is not None and l.product_title == product.title]
        if len(matching) == 1:
            return matching[0]
    return lines[0] if len(lines) == 1 else None


def ask_which_line(dispatcher: CollectingDispatcher, view: CartView, verb: Text) -> None:
    numbered = "\n".join(f"{i}. {line.label} x {line.quantity}" for i, line in enumerate(view.lines, start=1))
    dispatcher.utter_message(text=f"Which item would you like to {verb}? Your cart has:\n{numbered}\n"
                                  f"Say for example \"{verb} the first one\".")


class CartLineAction(Action, ABC):
    """Shared by remove and update: find the cart line meant, then change it."""

    verb = "change"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                view = cart_view(session, tracker.sender_id)
                if view.is_empty:
                    dispatcher.utter_message(text="Your cart is empty.")
                    return []
                line = line_meant(session, tracker, view.lines)
                if line is None:
                    ask_which_line(dispatcher, view, self.verb)
                    return []
                try:
                    changed = self.change(session, tracker, line)
                except CartError as error:
                    dispatcher.utter_message(text=error.message)
                    return []
                if changed is None:
                    dispatcher.utter_message(text=f"How many {line.label} would you like? Say for example "
                                                  "\"make it 2\".")
                    return []
                say_cart(dispatcher, changed)
        except SQLAlchemyError:
            logger.exception("Changing the cart failed")
            say_shop_data_unavailable(dispatcher)
        return []

    @abstractmethod
    def change(self, session: Session, tracker: Tracker, line: CartLine) -> Optional[CartView]:
        """The cart after the change; None when the message lacks what the change needs."""


class ActionRemoveFromCart(CartLineAction):
    verb = "remove"

    def name(self) -> Text:
        return "action_remove_from_cart"

    def change(self, session, tracker, line):
        return remove_item(session, tracker.sender_id, line.variant_id)


class ActionUpdateQuantity(CartLineAction):
    verb = "change"

    def name(self) -> Text:
        return "action_update_quantity"

    def change(self, session, tracker, line):
        quantity = latest_entity(tracker, "quantity")
        if quantity is None:
            return None
        return update_quantity(session, tracker.sender_id, line.variant_id, quantity)


class ActionViewCart(Action):
    def name(self) -> Text:
        return "action_view_cart"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                view = cart_view(session, tracker.sender_id)
        except SQLAlchemyError:
            logger.exception("Reading the cart failed")
            say_shop_data_unavailable(dispatcher)
            return []
        if view.is_empty:
            dispatcher.utter_message(text="Your cart is empty. Tell me what you're looking for and I'll find it.")
        else:
            say_cart(dispatcher, view)
        return []
