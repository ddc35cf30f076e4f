"""The payment sandbox's hosted pages and the shop's payment webhook, as aiohttp routes.

`add_payment_routes(app)` adds, to the shop front (web/server.py) or any aiohttp app:

| route                            | what                                                                |
| -------------------------------- | ------------------------------------------------------------------- |
| GET  /pay/{session_id}           | the sandbox's hosted payment page (card number, expiry, CVC)        |
| POST /pay/{session_id}           | charge the test card, call the webhook, then go to the success URL  |
| GET  /pay/{session_id}/success   | default success page: the order's payment state                     |
| GET  /pay/{session_id}/cancel    | default cancel page: nothing was taken, order and cart are kept     |
| POST /webhooks/payments          | the shop's webhook receiver (signed events only)                    |

The sandbox plays the gateway: after a card is submitted it POSTs the signed event to the provider's
webhook URL (PAYMENT_WEBHOOK_URL, default SHOP_PUBLIC_URL + /webhooks/payments) over real HTTP, just as a
hosted gateway would, and only then redirects the shopper. The card number is read from the form, handed to
the sandbox and dropped; it is never logged, stored or echoed back into the page.

Database work runs in worker threads, one unit of work (`shop.db.session_scope`) per request.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from shop.db import get_engine, session_scope
from shop.models import Order
from shop.payments import (
    CardAttempt,
    HostedPage,
    PaymentEvent,
    PaymentHook,
    PaymentProvider,
    SandboxPaymentProvider,
    WebhookError,
    handle_payment_event,
)
from shop.policy import format_money
from shop.rasa_client import rasa_token, rasa_url, trigger_intent
from shop.settings import shop_settings

log = logging.getLogger(__name__)

__all__ = ["PAYMENTS_KEY", "PaymentRoutes", "add_payment_routes", "chat_confirmation_hook", "rasa_url"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
MAX_WEBHOOK_BODY = 64 * 1024
DELIVERY_ATTEMPTS = 3
PAID_OR_LATER = ("paid", "packed", "shipped", "delivered", "return_requested", "returned", "refunded")
CONFIRMATION_INTENT = "payment_confirmed"


@dataclass
class PaymentRoutes:
    engine: Engine
    provider: PaymentProvider
    jinja: Environment
    on_paid: Optional[PaymentHook] = None
    on_failed: Optional[PaymentHook] = None
    shop_name: Callable[[], str] = lambda: shop_settings().name


PAYMENTS_KEY = web.AppKey("payments", PaymentRoutes)


def _jinja() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def add_payment_routes(app: web.Application, *, engine: Optional[Engine] = None,
                       provider: Optional[PaymentProvider] = None, on_paid: Optional[PaymentHook] = None,
                       on_failed: Optional[PaymentHook] = None) -> PaymentRoutes:
    """Add the sandbox pages and the webhook receiver to `app` (before it starts).

    engine: the shop database (default: the app's shop engine from web.server, else SHOP_DATABASE_URL);
    provider: default SandboxPaymentProvider(); on_paid / on_failed: see shop.payments.handle_payment_event.
    """
    if engine is None:
        try:
            from web.server import ENGINE_KEY  # imported here: web.server may import this module

            engine = app.get(ENGINE_KEY)
        except ImportError:  # pragma: no cover - web.server always exists in this repository
            engine = None
    shop_name: Callable[[], str] = lambda: shop_settings().name
    try:
        from web.server import SETTINGS_KEY

        settings = app.get(SETTINGS_KEY)
        if settings is not None:
            shop_name = lambda: settings.shop_name  # noqa: E731 - the shop front's own name
    except ImportError:  # pragma: no cover
        pass
    routes = PaymentRoutes(engine or get_engine(), provider or SandboxPaymentProvider(), _jinja(), on_paid, on_failed,
                           shop_name)
    app[PAYMENTS_KEY] = routes
    app.router.add_get("/pay/{session_id}", pay_page, name="pay")
    app.router.add_post("/pay/{session_id}", pay_submit, name="pay_submit")
    app.router.add_get("/pay/{session_id}/success", pay_success, name="pay_success")
    app.router.add_get("/pay/{session_id}/cancel", pay_cancel, name="pay_cancel")
    app.router.add_post("/webhooks/payments", payment_webhook, name="payment_webhook")
    return routes


# ----------------------------------------------------------------------------- helpers


async def _db(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(session, *args) in a worker thread inside one unit of work."""
    routes = request.app[PAYMENTS_KEY]

    def work() -> Any:
        with session_scope(routes.engine) as session:
            return fn(session, *args)

    return await asyncio.get_running_loop().run_in_executor(None, work)


def _security_headers(response: web.Response, page: Optional[HostedPage] = None) -> web.Response:
    form_targets = ["'self'"]
    if page is not None:
        for url in (page.success_url, page.cancel_url):
            parts = urlsplit(url or "")
            if parts.scheme in ("http", "https") and parts.netloc:
                form_targets.append(f"{parts.scheme}://{parts.netloc}")
    response.headers["Content-Security-Policy"] = "; ".join([
        "default-src 'none'", "style-src 'unsafe-inline'", "img-src data:",
        "form-action " + " ".join(dict.fromkeys(form_targets)), "frame-ancestors 'none'", "base-uri 'none'",
    ])
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _render(request: web.Request, template: str, status: int = 200, page: Optional[HostedPage] = None,
            **context: Any) -> web.Response:
    routes = request.app[PAYMENTS_KEY]
    body = routes.jinja.get_template(template).render(shop_name=routes.shop_name(), page=page, **context)
    return _security_headers(web.Response(text=body, status=status, content_type="text/html", charset="utf-8"), page)


def _money(cents: int) -> str:
    return format_money(cents)


def _card(page: HostedPage) -> str:
    return f"{page.card_brand} ending {page.card_last4}" if page.card_last4 else ""


_STATUS_FOR_STATE = {"missing": 404, "expired": 410, "not_payable": 409}
_HEADINGS = {"paid": "Payment complete", "refunded": "Payment refunded", "missing": "Payment not found",
             "expired": "Payment link expired", "not_payable": "Nothing to pay"}


def _payment_form(request: web.Request, page: HostedPage, *, error: str = "", field_errors=None,
                  status: int = 200) -> web.Response:
    return _render(
        request, "pay.html", status=status, page=page,
        action=f"/pay/{page.payment_session_id}", error=error, field_errors=field_errors or {},
        total=_money(page.total_cents),
        lines=[{"label": l.label, "quantity": l.quantity, "total": _money(l.total_cents)} for l in page.lines],
        money={"subtotal": _money(page.subtotal_cents), "discount": _money(page.discount_cents),
               "shipping": _money(page.shipping_cents), "tax": _money(page.tax_cents)},
    )


def _result(request: web.Request, page: HostedPage, *, heading: str, message: str, tone: str,
            status: int = 200, retry: bool = False) -> web.Response:
    return _render(
        request, "pay_result.html", status=status, page=page, heading=heading, message=message, tone=tone,
        state=page.state, order_number=page.order_number,
        total=_money(page.total_cents) if page.order_number else "", card=_card(page),
        retry_url=f"/pay/{page.payment_session_id}" if retry else None, home_url="/",
    )


def _state_page(request: web.Request, page: HostedPage) -> web.Response:
    """The page for a session that cannot take a card (paid, expired, cancelled order, unknown)."""
    tone = "ok" if page.state == "paid" else "warn" if page.state in ("refunded", "expired") else "error"
    return _result(request, page, heading=_HEADINGS.get(page.state, "Payment"), message=page.message, tone=tone,
                   status=_STATUS_FOR_STATE.get(page.state, 200))


def _page_and_order_status(session, provider: PaymentProvider, session_id: str):
    page = provider.hosted_page(session, session_id)  # type: ignore[attr-defined]
    status = None
    if page.order_number:
        from sqlalchemy import select

        status = session.execute(select(Order.status).where(Order.number == page.order_number)).scalar_one_or_none()
    return page, status


# ----------------------------------------------------------------------------- the hosted page


async def pay_page(request: web.Request) -> web.Response:
    provider = request.app[PAYMENTS_KEY].provider
    page: HostedPage = await _db(request, lambda s: provider.hosted_page(s, request.match_info["session_id"]))
    if page.state != "open":
        return _state_page(request, page)
    return _payment_form(request, page, error=page.last_failure and f"Last attempt: {page.last_failure}")


async def _deliver(request: web.Request, event: PaymentEvent) -> bool:
    """The gateway's webhook call: POST the signed event (fresh signature per try) until it is accepted."""
    provider = request.app[PAYMENTS_KEY].provider
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            body, headers = provider.signed_request(event)  # type: ignore[attr-defined]
            try:
                async with client.post(provider.webhook_url, data=body, headers=headers) as response:  # type: ignore[attr-defined]
                    if 200 <= response.status < 300:
                        await _db(request, lambda s: provider.mark_delivered(s, event))  # type: ignore[attr-defined]
                        return True
                    log.warning("webhook %s answered %s (try %s)", event.id, response.status, attempt)
                    if response.status < 500:
                        return False
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                log.warning("webhook %s not delivered (try %s): %s", event.id, attempt, type(error).__name__)
            await asyncio.sleep(0.3 * attempt)
    return False


async def pay_submit(request: web.Request) -> web.StreamResponse:
    provider = request.app[PAYMENTS_KEY].provider
    session_id = request.match_info["session_id"]
    form = await request.post()
    fields = {name: str(form.get(name, ""))[:40] for name in ("card_number", "expiry", "cvc")}
    attempt: CardAttempt = await _db(request, lambda s: provider.submit_card(s, session_id, **fields))  # type: ignore[attr-defined]
    fields.clear()
    if attempt.event is not None:
        await _deliver(request, attempt.event)
    if attempt.outcome == "succeeded":
        raise web.HTTPSeeOther(attempt.redirect_url or f"/pay/{session_id}/success")
    if attempt.outcome == "not_payable":
        return _state_page(request, attempt.page)
    status = 402 if attempt.outcome == "declined" else 400
    return _payment_form(request, attempt.page, error=attempt.message, field_errors=attempt.field_errors,
                         status=status)


async def pay_success(request: web.Request) -> web.Response:
    provider = request.app[PAYMENTS_KEY].provider
    page, status = await _db(request, _page_and_order_status, provider, request.match_info["session_id"])
    if page.state == "missing":
        return _state_page(request, page)
    if status in PAID_OR_LATER and page.state == "paid":
        return _result(request, page, heading="Thank you!", tone="ok",
                       message=f"Your payment was received and order {page.order_number} is paid. You can close this "
                               "page and carry on in the chat.")
    if page.state == "paid":  # the gateway took it; the shop has not confirmed yet
        return _result(request, page, heading="Payment received", tone="warn",
                       message=f"Your payment went through. We're confirming order {page.order_number}; this takes a "
                               "moment, and the assistant will let you know.")
    if page.state == "open":
        return _result(request, page, heading="Not paid yet", tone="warn", retry=True,
                       message=f"We haven't received a payment for order {page.order_number} yet.")
    return _state_page(request, page)


async def pay_cancel(request: web.Request) -> web.Response:
    provider = request.app[PAYMENTS_KEY].provider
    page: HostedPage = await _db(request, lambda s: provider.hosted_page(s, request.match_info["session_id"]))
    if page.state != "open":
        return _state_page(request, page)
    return _result(request, page, heading="Payment cancelled", tone="warn", retry=True,
                   message=f"No money was taken. Order {page.order_number} is saved and waiting for payment, and your "
                           "cart is unchanged. You can come back to pay any time before the link expires.")


# ----------------------------------------------------------------------------- the webhook receiver


async def payment_webhook(request: web.Request) -> web.Response:
    routes = request.app[PAYMENTS_KEY]
    body = await request.content.read(MAX_WEBHOOK_BODY + 1)
    if len(body) > MAX_WEBHOOK_BODY:
        return web.json_response({"error": "too_large"}, status=413)
    try:
        event = routes.provider.verify_webhook(request.headers, body)
    except WebhookError as error:
        log.warning("payment webhook rejected: %s", error.code)
        return web.json_response({"error": error.code, "message": error.message}, status=400)
    outcome = await _db(request, partial(_handle, routes), event)
    return web.json_response({"received": True, "status": outcome.status, "changed": outcome.changed})


def _handle(routes: PaymentRoutes, session, event: PaymentEvent):
    return handle_payment_event(session, event, on_paid=routes.on_paid, on_failed=routes.on_failed)


# ----------------------------------------------------------------------------- confirming in the chat


def chat_confirmation_hook(base_url: Optional[str] = None, token: Optional[str] = None) -> PaymentHook:
    """on_paid for chat orders: trigger the intent payment_confirmed in the shopper's conversation, so the
    assistant says "your order ... is confirmed" on the channel they last used (output_channel=latest).

    Runs after the payment is committed; a Rasa server that is down only costs the chat message (logged),
    never the payment. RASA_TOKEN is sent when Rasa's API is protected with --auth-token.
    """
    base = (base_url or rasa_url()).rstrip("/")
    token = token if token is not None else rasa_token()

    def confirm_in_chat(outcome) -> None:
        if not outcome.conversation_id or not outcome.order_number:
            return
        if trigger_intent(outcome.conversation_id, CONFIRMATION_INTENT, {"order_number": outcome.order_number},
                          base_url=base, token=token):
            log.info("payment of order %s confirmed in the chat", outcome.order_number)
        else:
            log.warning("could not confirm order %s in the chat", outcome.order_number)

    return confirm_in_chat
