"""The printable return label behind the chat's "Print your return label" link: GET /returns/{rma}/label.

Only a real RMA number gets a page; anything else is a plain 404 that does not say why. The label shows
what the carrier and the warehouse need (RMA, order number, sender, items, who pays the postage) and
nothing more: the link travels by chat and email, so it carries no payment or contact details.
"""
from __future__ import annotations

import asyncio
import re
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.engine import Engine

from shop.db import get_engine, session_scope
from shop.models import Return
from shop.policy import load_policy
from shop.settings import shop_settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
RMA = re.compile(r"^RMA-\d{6}$")
LABELS_KEY = web.AppKey("return_labels", dict)


def _label_data(engine: Engine, rma: str) -> Optional[Dict[str, Any]]:
    with session_scope(engine) as session:
        ret = session.execute(select(Return).where(Return.rma_number == rma)).scalar_one_or_none()
        if ret is None:
            return None
        order = ret.order
        policy = load_policy()
        region = policy.shipping.region_for_country(order.shipping_country)
        country = policy.shipping.countries.get(order.shipping_country, order.shipping_country)
        return {
            "rma": ret.rma_number,
            "order_number": order.number,
            "created": ret.created_at.strftime("%B %d, %Y").replace(" 0", " "),
            "sender": [order.shipping_name, order.shipping_address,
                       f"{order.shipping_city} {order.shipping_postcode}".strip(), country],
            "items": [(item.quantity, item.order_item.product_title, item.order_item.variant_label)
                      for item in ret.items],
            "prepaid": bool(region and policy.returns.shop_pays_return_shipping(region.key)),
            "status": ret.status,
        }


async def return_label(request: web.Request) -> web.Response:
    rma = request.match_info["rma"].strip().upper()
    labels = request.app[LABELS_KEY]
    data = None
    if RMA.match(rma):
        data = await asyncio.get_running_loop().run_in_executor(None, partial(_label_data, labels["engine"], rma))
    if data is None:
        raise web.HTTPNotFound(text="No return with that number.")
    body = labels["jinja"].get_template("return_label.html").render(shop_name=shop_settings().name, **data)
    return web.Response(text=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


def add_return_label_routes(app: web.Application, engine: Optional[Engine] = None) -> None:
    """Serve /returns/{rma}/label from `engine` (default: SHOP_DATABASE_URL's)."""
    jinja = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(default=True))
    app[LABELS_KEY] = {"engine": engine or get_engine(), "jinja": jinja}
    app.router.add_get("/returns/{rma}/label", return_label, name="return_label")
