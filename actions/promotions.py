"""Promotions in the chat: the public offers of the day, and discount codes applied to the cart.

The rules (dates, minimum spend, category, single use, usage limits) live in shop/promotions.py; a refused
code is answered with the backend's exact reason and leaves the cart as it was.
"""
import logging
import re
from datetime import datetime
from typing import Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.cart import CHECKOUT_BUTTON
from actions.shop_errors import say_shop_data_unavailable
from shop.carts import CartError
from shop.db import session_scope
from shop.promotions import apply_code, public_promotions

logger = logging.getLogger(__name__)

# A code as shoppers type it: letters and digits, often after "code"; SAVE20, welcome10, FREESHIP.
_AFTER_CODE_WORD = re.compile(r"\b(?:code|coupon|voucher)\s*[:#]?\s*([A-Za-z0-9-]{3,30})\b", re.IGNORECASE)
_CODE_LIKE = re.compile(r"\b([A-Z][A-Z0-9-]{3,29}|[A-Za-z]+\d+[A-Za-z0-9]*)\b")
_NOT_CODES = {"code", "coupon", "voucher", "promo", "discount", "apply", "use"}


def codes_in_message(tracker: Tracker) -> List[Text]:
    """The codes the latest message names: the discount_code entities, else code-shaped words."""
    found = [str(v).strip() for v in tracker.get_latest_entity_values("discount_code") if str(v).strip()]
    if not found:
        text = tracker.latest_message.get("text") or ""
        found = [m.group(1) for m in _AFTER_CODE_WORD.finditer(text) if m.group(1).lower() not in _NOT_CODES]
        found += [m.group(1) for m in _CODE_LIKE.finditer(text) if m.group(1).lower() not in _NOT_CODES]
    return list(dict.fromkeys(code.upper() for code in found))


def known_email(tracker: Tracker) -> Optional[Text]:
    return tracker.get_slot("cart_checkout_email") or None


class ActionListPromotions(Action):
    def name(self) -> Text:
        return "action_list_promotions"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        try:
            with session_scope() as session:
                promotions = public_promotions(session, datetime.utcnow())
        except SQLAlchemyError:
            logger.exception("Reading promotions failed")
            say_shop_data_unavailable(dispatcher)
            return []
        if not promotions:
            dispatcher.utter_message(text="There are no public promotions running right now.")
            return []
        listed = "\n".join(f"- {p.text}" for p in promotions)
        dispatcher.utter_message(text=f"Current promotions:\n{listed}\nOne code per order: tell me the code and "
                                      "I'll apply it to your cart.")
        return []


class ActionApplyDiscount(Action):
    def name(self) -> Text:
        return "action_apply_discount"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict]:
        codes = codes_in_message(tracker)
        if not codes:
            dispatcher.utter_message(text="Which discount code would you like to use?")
            return []
        if len(codes) > 1:
            dispatcher.utter_message(text=f"Only one code can be used per order, so I can't combine "
                                          f"{' and '.join(codes)}. Which one would you like?")
            return []
        try:
            with session_scope() as session:
                result = apply_code(session, tracker.sender_id, codes[0], datetime.utcnow(), email=known_email(tracker))
        except CartError as error:
            dispatcher.utter_message(text=error.message)
            return []
        except SQLAlchemyError:
            logger.exception("Applying a code failed")
            say_shop_data_unavailable(dispatcher)
            return []
        if not result.ok:
            dispatcher.utter_message(text=result.message)
            return []
        text = "\n".join(part for part in (result.message, result.view.text() if result.view else "") if part)
        dispatcher.utter_message(text=text, buttons=[CHECKOUT_BUTTON])
        return []
