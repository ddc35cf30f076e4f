"""The unsubscribe link of every newsletter: /newsletter/unsubscribe/{token}.

GET shows a one-button page and POST unsubscribes, so mail scanners that open links never unsubscribe
anybody; the reply is the same for unknown tokens (it never reveals who is on the list).
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from shop.db import session_scope
from shop.newsletter import NewsletterError, unsubscribe

__all__ = ["add_newsletter_routes"]

MAX_TOKEN_LENGTH = 100


def add_newsletter_routes(app: web.Application) -> None:
    app.router.add_get("/newsletter/unsubscribe/{token}", unsubscribe_page, name="newsletter_unsubscribe")
    app.router.add_post("/newsletter/unsubscribe/{token}", unsubscribe_submit, name="newsletter_unsubscribe_submit")


def _page(request: web.Request, *, done: bool, message: str = "", status: int = 200) -> web.Response:
    from web.server import _render  # web.server imports this module

    token = request.match_info["token"][:MAX_TOKEN_LENGTH]
    return _render(request, "newsletter_unsubscribe.html", page="newsletter", status=status, done=done,
                   message=message, action=f"/newsletter/unsubscribe/{token}", categories=[])


async def unsubscribe_page(request: web.Request) -> web.Response:
    return _page(request, done=False)


async def unsubscribe_submit(request: web.Request) -> web.Response:
    from web.server import ENGINE_KEY

    token = request.match_info["token"][:MAX_TOKEN_LENGTH]

    def work() -> str:
        with session_scope(request.app[ENGINE_KEY]) as session:
            return unsubscribe(session, token, source="email_link").message

    try:
        message = await asyncio.get_running_loop().run_in_executor(None, work)
    except NewsletterError as error:
        return _page(request, done=True, message=error.message, status=400)
    return _page(request, done=True, message=message)
