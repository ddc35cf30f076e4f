"""Back-in-stock and price-drop alerts in the live web chat: the shopper asks on a product page, the store
restocks and reprices through its own Shopify import, and the worker tells the shopper in the same chat."""
import csv

from sqlalchemy import select

from shop.alerts import StockAlert
from shop.db import session_scope
from shop.models import Product, Variant
from shop.policy import format_money
from tests.e2e.chat import ask, buttons, reply_with, start_worker, wait_until
from tests.e2e.test_socketio import WebChatClient
from web.server import page_context_payload

SENDER = "e2e-stock-alerts"
IMPORT_COLUMNS = ["Handle", "Title", "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value",
                  "Variant SKU", "Variant Grams", "Variant Price", "Variant Compare At Price", "Variant Inventory Qty"]


def sold_out_variant(engine):
    """A published product with a sold-out colour and size and at least one variant in stock."""
    with session_scope(engine) as session:
        in_stock = select(Variant.product_id).where(Variant.stock > 0)
        product, variant = session.execute(
            select(Product, Variant).join(Variant, Variant.product_id == Product.id)
            .where(Variant.stock <= 0, Product.published.is_(True), Variant.color != "", Variant.size != "",
                   Product.id.in_(in_stock))
            .order_by(Product.id, Variant.id)
        ).first()
        return product.handle, product.title, variant.id


def alerts_of_this_chat(engine):
    with session_scope(engine) as session:
        alerts = session.execute(select(StockAlert).where(StockAlert.conversation_id == SENDER)
                                 .order_by(StockAlert.id)).scalars().all()
        session.expunge_all()
        return alerts


def variant(engine, variant_id: int) -> Variant:
    with session_scope(engine) as session:
        found = session.get(Variant, variant_id)
        session.expunge(found)
        return found


def import_as_the_store(stack, title: str, handle: str, changes) -> str:
    """Write the changed variants as a Shopify product export and import it with `python -m shop import-shopify`,
    the store's own way of updating stock and prices; returns the import's summary."""
    path = stack.workdir / f"{handle}-update.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, IMPORT_COLUMNS)
        writer.writeheader()
        for row, (current, price_cents, stock) in enumerate(changes):
            writer.writerow({
                "Handle": handle, "Title": title if row == 0 else "", "Option1 Name": "Color",
                "Option1 Value": current.color, "Option2 Name": "Size", "Option2 Value": current.size,
                "Variant SKU": current.sku or "", "Variant Grams": current.grams or 0,
                "Variant Price": f"{price_cents / 100:.2f}",
                "Variant Compare At Price": f"{current.compare_at_price_cents / 100:.2f}"
                if current.compare_at_price_cents else "",
                "Variant Inventory Qty": stock,
            })
    return stack.shop("import-shopify", str(path))


def test_the_shopper_hears_in_the_chat_when_a_sold_out_size_is_back_and_when_the_price_drops(stack):
    engine = stack.engine()
    handle, title, sold_out_id = sold_out_variant(engine)
    sold_out = variant(engine, sold_out_id)
    chat = WebChatClient(stack.rasa_url, SENDER)
    try:
        chat.say(page_context_payload("product", handle))
        reply_with(chat, f"Looking at the {title}?")

        watching = ask(chat, f"tell me when the {sold_out.color} one in size {sold_out.size} is back",
                       "is back in stock")["text"]
        assert f"{title} ({sold_out.color} / {sold_out.size})" in watching and "I'll tell you here" in watching
        cheaper = ask(chat, "let me know if it gets cheaper", "costs less than")["text"]

        [back, drop] = alerts_of_this_chat(engine)
        assert (back.kind, back.variant_id, back.status) == ("back_in_stock", sold_out_id, "waiting")
        assert (drop.kind, drop.status) == ("price_drop", "waiting")
        watched = variant(engine, drop.variant_id)
        assert f"costs less than {format_money(watched.price_cents)}" in cheaper
        assert watched.price_cents == drop.price_cents_at_subscription

        new_price = watched.price_cents - 500
        # The cheapest variant, watched for the price, may be the sold-out one itself: one row then.
        changes = {sold_out.id: (sold_out, sold_out.price_cents, 7)}
        changes[watched.id] = (watched, new_price, 7 if watched.id == sold_out.id else watched.stock)
        summary = import_as_the_store(stack, title, handle, list(changes.values()))
        assert "products: 0 created, 1 updated" in summary and "rows skipped: 0" in summary, summary
        assert variant(engine, sold_out_id).stock == 7 and variant(engine, watched.id).price_cents == new_price

        worker = start_worker(stack, "worker-alerts.log")
        try:
            notices = [reply_with(chat, "Good news"), reply_with(chat, "Good news")]
            wait_until(lambda: all(a.status == "notified" for a in alerts_of_this_chat(engine)),
                       "both alerts marked notified")
        finally:
            worker.stop()
    finally:
        chat.close()

    by_kind = {("back" if "back in stock" in n["text"] else "drop"): n for n in notices}
    assert set(by_kind) == {"back", "drop"}
    assert f"{title} ({sold_out.color} / {sold_out.size}) is back in stock" in by_kind["back"]["text"]
    assert (f"is now {format_money(new_price)} (it was {format_money(watched.price_cents)}"
            in by_kind["drop"]["text"])
    page = f"{stack.web_url}/products/{handle}"
    assert all(page in notice["text"] for notice in notices)
    assert buttons(by_kind["back"])["Add to cart"] == (
        f'/add_to_cart{{"product_handle": "{handle}", "size": "{sold_out.size}", "color": "{sold_out.color}"}}')

    alerts = alerts_of_this_chat(engine)
    assert [(a.status, a.channel) for a in alerts] == [("notified", "chat"), ("notified", "chat")]
    assert alerts[1].notified_price_cents == new_price
