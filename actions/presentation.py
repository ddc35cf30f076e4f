"""Turns shop results into chat messages: cards for rich web chat, compact text elsewhere."""
import json
from typing import Any, Dict, Sequence, Text

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from shop.catalog import ProductSummary, format_price
from shop.settings import absolute_url, shop_settings

RICH_CHANNELS = {"socketio"}


def channel_supports_cards(tracker: Tracker) -> bool:
    return tracker.get_latest_input_channel() in RICH_CHANNELS


def price_text(product: ProductSummary) -> Text:
    symbol = shop_settings().currency_symbol
    price = format_price(product.price_cents, symbol)
    if product.compare_at_price_cents and product.compare_at_price_cents > product.price_cents:
        return f"{price} (was {format_price(product.compare_at_price_cents, symbol)})"
    return price


def rating_text(product: ProductSummary) -> Text:
    if not product.review_count:
        return "no reviews yet"
    noun = "review" if product.review_count == 1 else "reviews"
    return f"{product.rating:.1f}/5 from {product.review_count} {noun}"


def product_card(product: ProductSummary) -> Dict[Text, Any]:
    link = absolute_url(product.url_path)
    return {
        "title": product.title,
        "subtitle": f"{product.brand} · {price_text(product)} · {rating_text(product)}",
        "image_url": absolute_url(product.image_url),
        "default_action": {"type": "web_url", "url": link},
        "buttons": [
            {"title": "View product", "type": "web_url", "url": link},
            {"title": "Add to cart", "type": "postback",
             "payload": "/add_to_cart" + json.dumps({"product_handle": product.handle})},
        ],
    }


def product_line(position: int, product: ProductSummary) -> Text:
    stock = "" if product.in_stock else " (out of stock)"
    return (
        f"{position}. {product.title} by {product.brand}: {price_text(product)}, "
        f"{rating_text(product)}{stock} - {absolute_url(product.url_path)}"
    )


def product_list_text(products: Sequence[ProductSummary]) -> Text:
    return "\n".join(product_line(i, p) for i, p in enumerate(products, start=1))


def product_carousel(products: Sequence[ProductSummary]) -> Dict[Text, Any]:
    """One carousel attachment, the template rasa-webchat renders as swipeable cards."""
    return {
        "type": "template",
        "payload": {"template_type": "generic", "elements": [product_card(p) for p in products]},
    }


def show_products(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    intro: Text,
    products: Sequence[ProductSummary],
    offer_more: bool = False,
) -> None:
    """Cards on the web chat, a numbered list elsewhere; a "show more" button when there is more."""
    buttons = [{"title": "Show more", "payload": "/show_more"}] if offer_more else []
    if channel_supports_cards(tracker):
        dispatcher.utter_message(text=intro)
        dispatcher.utter_message(attachment=product_carousel(products))
        if buttons:
            dispatcher.utter_message(text="Want to see more?", buttons=buttons)
    else:
        more = "\nSay \"show more\" for more." if offer_more else ""
        dispatcher.utter_message(text=f"{intro}\n{product_list_text(products)}{more}")
