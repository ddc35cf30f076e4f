"""The printable return label page: a real RMA gets its label, anything else a 404."""
from datetime import datetime, timedelta

import pytest
import requests
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from shop.db import make_engine, session_scope
from shop.models import Order, OrderItem, Variant
from shop.returns import start_return
from tests.browser import launch_chromium


@pytest.fixture(scope="module")
def rma(shop_database):
    """A delivered order in the shop front's database with a return started on it."""
    engine = make_engine(shop_database)
    with session_scope(engine) as session:
        variant = session.execute(select(Variant).order_by(Variant.id).limit(1)).scalar_one()
        order = Order(number="SH-700001", email="lee@example.com", status="delivered", shipping_name="Lee Park",
                      shipping_address="9 Elm Road", shipping_city="Portland, OR", shipping_postcode="97205",
                      shipping_country="US", subtotal_cents=2 * variant.price_cents, total_cents=2 * variant.price_cents,
                      placed_at=datetime.utcnow() - timedelta(days=9), delivered_at=datetime.utcnow() - timedelta(days=4))
        order.items.append(OrderItem(variant_id=variant.id, product_title=variant.product.title,
                                     variant_label=variant.label, quantity=2, unit_price_cents=variant.price_cents))
        session.add(order)
        session.flush()
        started = start_return(session, "SH-700001", {order.items[0].id: 1}, reason="too small",
                               owner_email="lee@example.com")
        title = variant.product.title
    engine.dispose()
    return started.rma_number, title


def test_the_label_of_a_real_return_prints_its_rma_sender_and_items(web_server, rma):
    number, title = rma
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            response = page.goto(f"{web_server}/returns/{number}/label")
            assert response.status == 200
            assert page.locator("[data-rma]").inner_text() == number
            text = page.locator(".label").inner_text()
        finally:
            browser.close()
    assert "Order SH-700001" in text
    assert "Lee Park" in text and "9 Elm Road" in text
    assert f"1 x {title}" in text
    assert "Postage prepaid" in text


@pytest.mark.parametrize("path", ["RMA-000000", "RMA-12", "SH-700001", "%3Cscript%3E", "x" * 300])
def test_anything_but_a_real_rma_is_a_404(web_server, rma, path):
    response = requests.get(f"{web_server}/returns/{path}/label", timeout=10)

    assert response.status_code == 404
    assert "SH-700001" not in response.text and "Lee Park" not in response.text
