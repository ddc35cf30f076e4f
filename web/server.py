"""The shopper-facing shop front: a few server-rendered pages plus the rasa-webchat widget.

Pages read the shop database through `shop.catalog` (one session per request, opened and
closed in `_query`); the chat widget talks to Rasa's socket.io channel straight from the
browser. Nothing here imports Rasa.
"""
from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import math
import re
import textwrap
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import quote, urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from shop.catalog import (
    SearchFilters,
    category_names,
    featured_products,
    format_price,
    get_product,
    search_products,
)
from shop.db import get_engine, session_scope
from shop.models import Product
from web.analytics import add_analytics_routes, copy_events_in_background
from web.console import add_console_routes
from shop.payments import PaymentHook, PaymentProvider
from web.newsletter import add_newsletter_routes
from web.payments import add_payment_routes, chat_confirmation_hook
from web.returns import add_return_label_routes
from web.settings import Settings, load_settings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
# rasa-webchat's UMD browser build: defines window.WebChat (WebChat.default(props, element)).
WEBCHAT_BUNDLE = WEB_DIR / "node_modules" / "rasa-webchat" / "lib" / "index.js"
# The bundle's CSS pulls the Inter font from Google; the shop must work with no network and
# no third-party requests, so that import is dropped (the widget falls back to sans-serif).
_REMOTE_FONT_IMPORT = re.compile(r"@import url\(https?://fonts\.googleapis\.com/[^)]*\);?")

MAX_HANDLE_LENGTH = 200
MAX_QUERY_LENGTH = 200
FEATURED_COUNT = 12
SEARCH_PAGE_SIZE = 24
MAX_SEARCH_PAGE = 1000
LATEST_REVIEWS = 5
LOW_STOCK = 3
# Long URLs (e.g. a 10 kB product handle) must reach the handler and get a 404, not a parser 400.
MAX_REQUEST_LINE = 64 * 1024

SETTINGS_KEY = web.AppKey("settings", Settings)
ENGINE_KEY = web.AppKey("engine", Engine)
JINJA_KEY = web.AppKey("jinja", Environment)
ASSETS_KEY = web.AppKey("assets", dict)

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


# ----------------------------------------------------------------------------- view models


@dataclass(frozen=True)
class Card:
    """A product as the grid shows it."""

    handle: str
    title: str
    brand: str
    price: str
    compare_at: Optional[str]
    rating: Optional[float]
    review_count: int
    in_stock: bool
    image: str
    colors: tuple


def _product_path(handle: str) -> str:
    return "/products/" + quote(handle, safe="")


def _placeholder_image(handle: str) -> str:
    return f"/images/products/{quote(handle, safe='')}.svg"


def _image_src(image_url: str, handle: str) -> str:
    """A product's own image when it is a plain http(s) or same-site URL, else our placeholder."""
    url = (image_url or "").strip()
    if url.startswith(("https://", "http://")) or (url.startswith("/") and not url.startswith("//")):
        return url
    return _placeholder_image(handle)


def _price(settings: Settings, cents: Optional[int]) -> Optional[str]:
    if cents is None:
        return None
    return format_price(cents, settings.currency_symbol)


def _card(settings: Settings, summary) -> Card:
    compare_at = summary.compare_at_price_cents
    return Card(
        handle=summary.handle,
        title=summary.title,
        brand=summary.brand,
        price=_price(settings, summary.price_cents),
        compare_at=_price(settings, compare_at) if compare_at and compare_at > summary.price_cents else None,
        rating=summary.rating,
        review_count=summary.review_count,
        in_stock=summary.in_stock,
        image=_image_src(summary.image_url, summary.handle),
        colors=tuple(summary.colors[:5]),
    )


def _plain_handle(raw: str) -> Optional[str]:
    """The handle to look up, or None when it cannot name a product (too long, control chars)."""
    if not raw or len(raw) > MAX_HANDLE_LENGTH or _CONTROL_CHARS.search(raw):
        return None
    return raw


def _clean_text(raw: Optional[str], limit: int = MAX_QUERY_LENGTH) -> str:
    return _CONTROL_CHARS.sub(" ", raw or "").strip()[:limit]


def _page_number(raw: Optional[str]) -> int:
    try:
        number = int(raw or "1")
    except ValueError:
        return 1
    return min(max(number, 1), MAX_SEARCH_PAGE)


# ----------------------------------------------------------------------------- database work
# These run in a worker thread (SQLAlchemy here is synchronous) and return plain objects.


def _home_data(settings: Settings, engine: Engine) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return {
            "categories": category_names(session),
            "featured": [_card(settings, s) for s in featured_products(session, FEATURED_COUNT)],
        }


def _search_data(settings: Settings, engine: Engine, filters: SearchFilters) -> Dict[str, Any]:
    with session_scope(engine) as session:
        result = search_products(session, filters)
        return {
            "categories": category_names(session),
            "results": [_card(settings, s) for s in result.products],
            "total": result.total,
        }


def _product_data(settings: Settings, engine: Engine, handle: str) -> Dict[str, Any]:
    with session_scope(engine) as session:
        categories = category_names(session)
        product = get_product(session, handle)
        if product is None or not product.published:
            return {"categories": categories, "product": None}
        return {"categories": categories, "product": _product_view(settings, product)}


def _product_view(settings: Settings, product: Product) -> Dict[str, Any]:
    variants = []
    for v in product.variants:
        compare_at = v.compare_at_price_cents
        variants.append(
            {
                "color": v.color,
                "size": v.size,
                "sku": v.sku or "",
                "price": _price(settings, v.price_cents),
                "compare_at": _price(settings, compare_at) if compare_at and compare_at > v.price_cents else None,
                "in_stock": v.stock > 0,
                "low_stock": 0 < v.stock <= LOW_STOCK,
                "stock": v.stock,
            }
        )
    prices = [v.price_cents for v in product.variants]
    cheapest = min(product.variants, key=lambda v: v.price_cents) if product.variants else None
    reviews = sorted(product.reviews, key=lambda r: (r.created_at, r.id), reverse=True)
    ratings = [r.rating for r in product.reviews]
    compare_at = cheapest.compare_at_price_cents if cheapest else None
    return {
        "handle": product.handle,
        "title": product.title,
        "brand": product.brand.name if product.brand else "",
        "category": product.category.name if product.category else "",
        "product_type": product.product_type,
        "material": product.material,
        "description_paragraphs": [p.strip() for p in re.split(r"\n\s*\n", product.description or "") if p.strip()],
        "image": _image_src(product.image_url, product.handle),
        "price": _price(settings, min(prices)) if prices else None,
        "price_varies": len(set(prices)) > 1,
        "compare_at": _price(settings, compare_at)
        if cheapest and compare_at and compare_at > cheapest.price_cents
        else None,
        "in_stock": any(v.stock > 0 for v in product.variants),
        "variants": variants,
        "rating": round(sum(ratings) / len(ratings), 1) if ratings else None,
        "review_count": len(ratings),
        "reviews": [
            {
                "rating": r.rating,
                "title": r.title,
                "body": r.body,
                "author": r.author_name or "Anonymous",
                "date": r.created_at.strftime("%d %b %Y") if r.created_at else "",
            }
            for r in reviews[:LATEST_REVIEWS]
        ],
    }


def _product_title(engine: Engine, handle: str) -> Optional[str]:
    with session_scope(engine) as session:
        return session.execute(select(Product.title).where(Product.handle == handle)).scalar_one_or_none()


async def _query(request: web.Request, fn: Callable, *args) -> Any:
    """Run blocking database work off the event loop."""
    app = request.app
    return await asyncio.get_running_loop().run_in_executor(
        None, partial(fn, app[SETTINGS_KEY], app[ENGINE_KEY], *args)
    )


# ----------------------------------------------------------------------------- rendering


def page_context_payload(page: str, product_handle: Optional[str]) -> str:
    """The message that opens the chat: intent page_context with the page as entities, so the assistant
    starts with help for this page (actions/page_context.py) instead of one greeting for every page."""
    entities = {"page_type": page}
    if product_handle:
        entities["product_handle"] = product_handle
    return "/page_context" + json.dumps(entities, separators=(",", ":"))


def _chat_config(settings: Settings, page: str, product_handle: Optional[str]) -> Dict[str, Any]:
    """Props for rasa-webchat's WebChat.default(props, element)."""
    return {
        "socketUrl": settings.rasa_socket_url,
        "socketPath": settings.rasa_socket_path,
        "title": settings.shop_name,
        "subtitle": "Shopping assistant",
        "initPayload": page_context_payload(page, product_handle),
        "customData": {"page": page, "product_handle": product_handle, "language": "en"},
        "params": {"storage": "session"},
        "embedded": False,
        # Show the launcher even before the socket connects (the widget says it is connecting).
        "hideWhenNotConnected": False,
        "connectingText": "Connecting to the shop assistant...",
        "inputTextFieldHint": "Ask about products, orders, returns...",
        "showFullScreenButton": False,
    }


def _render(
    request: web.Request,
    template: str,
    *,
    page: str,
    product_handle: Optional[str] = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    app = request.app
    settings = app[SETTINGS_KEY]
    body = app[JINJA_KEY].get_template(template).render(
        shop_name=settings.shop_name,
        chat_config=_chat_config(settings, page, product_handle),
        assets=app[ASSETS_KEY],
        page=page,
        **context,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _not_found(request: web.Request, message: str, categories: Optional[List[str]] = None) -> web.Response:
    return _render(
        request,
        "404.html",
        page="not_found",
        status=404,
        message=message,
        categories=categories or [],
    )


# ----------------------------------------------------------------------------- handlers


async def home(request: web.Request) -> web.Response:
    data = await _query(request, _home_data)
    return _render(request, "home.html", page="home", **data)


async def search(request: web.Request) -> web.Response:
    q = _clean_text(request.query.get("q"))
    category = _clean_text(request.query.get("category"), 80)
    color = _clean_text(request.query.get("color"), 60)
    page_number = _page_number(request.query.get("page"))
    filters = SearchFilters(
        text=q,
        category=category or None,
        color=color or None,
        limit=SEARCH_PAGE_SIZE,
        offset=(page_number - 1) * SEARCH_PAGE_SIZE,
    )
    data = await _query(request, _search_data, filters)
    page_count = max(1, math.ceil(data["total"] / SEARCH_PAGE_SIZE))

    def page_link(number: int) -> str:
        params = {k: v for k, v in (("q", q), ("category", category), ("color", color)) if v}
        if number > 1:
            params["page"] = str(number)
        return "/search" + ("?" + urlencode(params) if params else "")

    return _render(
        request,
        "search.html",
        page="search",
        q=q,
        category=category,
        color=color,
        page_number=page_number,
        page_count=page_count,
        prev_link=page_link(page_number - 1) if page_number > 1 else None,
        next_link=page_link(page_number + 1) if page_number < page_count else None,
        first_shown=(page_number - 1) * SEARCH_PAGE_SIZE + 1,
        last_shown=(page_number - 1) * SEARCH_PAGE_SIZE + len(data["results"]),
        **data,
    )


async def product_page(request: web.Request) -> web.Response:
    handle = _plain_handle(request.match_info["handle"])
    if handle is None:
        return _not_found(request, "That product address doesn't look right.")
    data = await _query(request, _product_data, handle)
    if data["product"] is None:
        return _not_found(
            request,
            "We couldn't find that product. It may have sold out for good or the link may be mistyped.",
            data["categories"],
        )
    return _render(
        request,
        "product.html",
        page="product",
        product_handle=data["product"]["handle"],
        product=data["product"],
        categories=data["categories"],
    )


async def product_image(request: web.Request) -> web.Response:
    handle = _plain_handle(request.match_info["handle"])
    if handle is None:
        raise web.HTTPNotFound()
    title = await asyncio.get_running_loop().run_in_executor(
        None, _product_title, request.app[ENGINE_KEY], handle
    )
    svg = placeholder_svg(handle, title)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def webchat_bundle(request: web.Request) -> web.StreamResponse:
    assets = request.app[ASSETS_KEY]
    if assets.get("webchat") is None:
        try:
            assets["webchat"] = load_webchat_bundle()
        except FileNotFoundError:
            log.error("rasa-webchat is not installed: run `npm ci` in %s", WEB_DIR)
            return web.Response(
                status=503,
                text=f"// rasa-webchat is not installed: run `npm ci` in {WEB_DIR}\n",
                content_type="application/javascript",
            )
    body, etag = assets["webchat"]
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    response = web.Response(body=body, content_type="application/javascript", charset="utf-8", headers=headers)
    response.enable_compression()
    return response


def load_webchat_bundle(path: Path = WEBCHAT_BUNDLE) -> tuple:
    """The widget bundle as served (remote font import removed) and its ETag."""
    text = path.read_text(encoding="utf-8")
    if "WebChat" not in text:
        raise RuntimeError(f"{path} is not the rasa-webchat UMD bundle")
    body = _REMOTE_FONT_IMPORT.sub("", text).encode("utf-8")
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


# ----------------------------------------------------------------------------- placeholder images


def _initials(text: str) -> str:
    words = [w for w in re.split(r"[\s\-_/]+", text) if w and w[0].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def _wrap(text: str, width: int, lines: int) -> List[str]:
    return textwrap.wrap(text, width, max_lines=lines, placeholder="\u2026", break_long_words=True) or [text[:width]]


def placeholder_svg(handle: str, title: Optional[str] = None) -> str:
    """A deterministic product picture: colours from the handle, initials and title as text."""
    label = (title or handle.replace("-", " ").replace("_", " ")).strip() or handle
    digest = hashlib.sha256(handle.encode("utf-8")).digest()
    hue = digest[0] * 360 // 256
    hue2 = (hue + 25 + digest[1] % 40) % 360
    sat = 45 + digest[2] % 25
    top = f"hsl({hue}, {sat}%, 86%)"
    bottom = f"hsl({hue2}, {sat}%, 74%)"
    ink = f"hsl({hue}, {sat}%, 24%)"
    accent = f"hsl({hue2}, {sat}%, 64%)"
    cx = 120 + digest[3] % 360
    cy = 90 + digest[4] % 200
    radius = 110 + digest[5] % 90
    lines = _wrap(label, 26, 2)
    text_lines = "".join(
        f'<text x="300" y="{470 + i * 40}" text-anchor="middle" font-size="30" '
        f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
        f'fill="{ink}" fill-opacity="0.85">{html.escape(line)}</text>'
        for i, line in enumerate(lines)
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600" viewBox="0 0 600 600" '
        f'role="img" aria-label="{html.escape(label)}">'
        f'<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{top}"/><stop offset="1" stop-color="{bottom}"/>'
        "</linearGradient></defs>"
        '<rect width="600" height="600" fill="url(#g)"/>'
        f'<circle cx="{cx}" cy="{cy}" r="{radius}" fill="{accent}" fill-opacity="0.35"/>'
        f'<circle cx="{600 - cx}" cy="{cy + 180}" r="{radius // 2}" fill="#ffffff" fill-opacity="0.25"/>'
        f'<text x="300" y="330" text-anchor="middle" font-size="150" font-weight="700" '
        f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
        f'fill="{ink}" fill-opacity="0.9">{html.escape(_initials(label))}</text>'
        f"{text_lines}</svg>"
    )


# ----------------------------------------------------------------------------- middleware


def _content_security_policy(settings: Settings) -> str:
    chat = " ".join(settings.rasa_origins)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            # The widget injects its CSS as <style> elements and sets inline colours.
            "style-src 'self' 'unsafe-inline'",
            # Imported products may carry https image URLs; bot messages may show images.
            "img-src 'self' data: https:",
            f"connect-src 'self' {chat}",
            "font-src 'self' data:",
            "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
        ]
    )


@web.middleware
async def errors_and_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = _not_found(request, "We couldn't find the page you were looking for.")
    except web.HTTPException:
        raise
    except SQLAlchemyError:
        log.exception("database error on %s", request.path)
        response = _render(request, "error.html", page="error", status=503, categories=[])
    except Exception:
        log.exception("error on %s", request.path)
        response = _render(request, "error.html", page="error", status=500, categories=[])
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    if response.content_type == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy", _content_security_policy(request.app[SETTINGS_KEY])
        )
    return response


# ----------------------------------------------------------------------------- application


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _jinja() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["product_url"] = _product_path
    env.globals["search_url"] = lambda **params: "/search?" + urlencode({k: v for k, v in params.items() if v})
    return env


def _check_database(engine: Engine) -> None:
    try:
        if not inspect(engine).has_table("products"):
            log.warning("the shop database has no products table yet: run `python -m shop seed`")
    except SQLAlchemyError as exc:
        log.warning("cannot reach the shop database (%s)", exc)


def create_app(engine: Optional[Engine] = None, settings: Optional[Settings] = None, *,
               payment_provider: Optional[PaymentProvider] = None,
               on_paid: Optional[PaymentHook] = None) -> web.Application:
    """The shop front; payments default to the sandbox, a paid chat order is confirmed in its chat."""
    app = web.Application(
        middlewares=[errors_and_headers],
        handler_args={"max_line_size": MAX_REQUEST_LINE, "max_field_size": 16 * 1024},
    )
    app[SETTINGS_KEY] = settings or load_settings()
    app[ENGINE_KEY] = engine or get_engine()
    app[JINJA_KEY] = _jinja()
    app[ASSETS_KEY] = {"version": _asset_version(), "webchat": None}
    _check_database(app[ENGINE_KEY])

    app.router.add_get("/", home, name="home")
    app.router.add_get("/search", search, name="search")
    app.router.add_get("/products/{handle}", product_page, name="product")
    app.router.add_get("/images/products/{handle}.svg", product_image, name="product_image")
    app.router.add_get("/healthz", healthz, name="healthz")
    add_console_routes(app, app[ENGINE_KEY])  # the agent console for human handoff (web/console.py)
    # Registered before the static directory so this path is served from the npm package.
    app.router.add_get("/static/webchat.js", webchat_bundle, name="webchat")
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    add_payment_routes(app, engine=app[ENGINE_KEY], provider=payment_provider,
                       on_paid=on_paid or chat_confirmation_hook())
    add_newsletter_routes(app)
    add_return_label_routes(app, app[ENGINE_KEY])  # printable return labels (web/returns.py)
    add_analytics_routes(app, app[ENGINE_KEY])  # the store team's dashboard (web/analytics.py)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    app = create_app(settings=settings)
    app.cleanup_ctx.append(copy_events_in_background)  # conversation events for the analytics dashboard
    print(f"{settings.shop_name} shop front on http://{settings.host}:{settings.port}/ "
          f"(chat: {settings.rasa_socket_url})", flush=True)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
    )
