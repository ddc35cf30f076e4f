"""The agent console: people from the shop's team take over chats from the bot and hand them back.

Pages: /console/login, /console (the queue and one conversation, refreshed every second by
static/console.js). JSON API under /console/api/, refused without an agent session:

- GET  queue                          waiting, active and resolved chats, open tickets
- GET  conversations/{id}             transcript + what the bot knew (from Rasa's tracker)
- POST conversations/{id}/claim       waiting -> active: Rasa pauses the bot
- POST conversations/{id}/messages    {"text": ...} to the shopper (only the claiming agent)
- POST conversations/{id}/resolve     active -> resolved: Rasa resumes, the bot asks for a rating

The console talks to Rasa's HTTP API (RASA_URL, `rasa run --enable-api`) and to the chat
channel's relay (channels/webchat.py). A background task turns chats nobody claimed within
SHOP_HANDOFF_WAIT_SECONDS into "leave a message" conversations. All state lives in the shop
database and Rasa's tracker store, so restarting any server loses nothing.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional
from urllib.parse import quote

import aiohttp
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from shop.carts import cart_lines, find_open_cart
from shop.db import session_scope
from shop.handoff import (
    MESSAGE_MAX,
    HandoffError,
    HandoffRequest,
    agents_from_env,
    authenticate,
    claim,
    expire_unclaimed,
    get_handoff,
    handoffs_by_status,
    open_tickets,
    owned_active,
    relay_token,
    release,
    resolve,
    support_settings,
)
from shop.settings import shop_settings
from shop.verification import verified_email

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "shop_console_session"
SESSION_HOURS = 12
SWEEP_SECONDS = 1.0
RASA_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class ConsoleSettings:
    rasa_api_url: str
    rasa_api_token: str
    relay_token: str
    agents: Mapping[str, str]
    session_secret: bytes
    wait_seconds: int


def console_settings(environ: Optional[Mapping[str, str]] = None) -> ConsoleSettings:
    env = os.environ if environ is None else environ
    agents = agents_from_env(env)
    default_rasa = f"http://127.0.0.1:{env.get('RASA_PORT') or '5005'}"
    secret = env.get("CONSOLE_SESSION_SECRET", "")
    # Without an explicit secret, sessions are signed with a key derived from the agents' password
    # hashes: it survives restarts and changes (logging everyone out) when the agents change.
    key = secret.encode() if secret else hashlib.sha256(
        b"shop-console-session:" + json.dumps(sorted(agents.items())).encode()).digest()
    return ConsoleSettings(
        rasa_api_url=(env.get("RASA_URL") or default_rasa).rstrip("/"),
        rasa_api_token=env.get("RASA_TOKEN", ""),
        relay_token=relay_token(env),
        agents=agents,
        session_secret=key,
        wait_seconds=support_settings(env).wait_seconds,
    )


CONSOLE_KEY = web.AppKey("console_settings", ConsoleSettings)
CONSOLE_ENGINE_KEY = web.AppKey("console_engine", Engine)
CONSOLE_JINJA_KEY = web.AppKey("console_jinja", Environment)
HTTP_KEY = web.AppKey("console_http", aiohttp.ClientSession)


class RasaUnavailable(Exception):
    """Rasa's HTTP API did not do what the console asked."""


# ----------------------------------------------------------------------------- agent sessions


def _sign(secret: bytes, payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def session_cookie_for(settings: ConsoleSettings, agent: str, now: Optional[float] = None) -> str:
    expires = int((now or time.time()) + SESSION_HOURS * 3600)
    payload = base64.urlsafe_b64encode(json.dumps([agent, expires]).encode()).decode()
    return f"{payload}.{_sign(settings.session_secret, payload)}"


def agent_of_cookie(settings: ConsoleSettings, cookie: Optional[str], now: Optional[float] = None) -> Optional[str]:
    if not cookie or "." not in cookie:
        return None
    payload, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(settings.session_secret, payload)):
        return None
    try:
        agent, expires = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, TypeError):
        return None
    if expires < (now or time.time()) or agent not in settings.agents:
        return None
    return agent


def _agent(request: web.Request) -> Optional[str]:
    return agent_of_cookie(request.app[CONSOLE_KEY], request.cookies.get(SESSION_COOKIE))


def _require_agent(request: web.Request) -> str:
    agent = _agent(request)
    if agent is None:
        raise web.HTTPUnauthorized(text=json.dumps({"error": "Please log in to the agent console."}),
                                   content_type="application/json")
    return agent


# ----------------------------------------------------------------------------- Rasa's HTTP API


async def _rasa(app: web.Application, method: str, path: str, payload: Any = None) -> Any:
    settings = app[CONSOLE_KEY]
    params = {"token": settings.rasa_api_token} if settings.rasa_api_token else {}
    url = settings.rasa_api_url + path
    try:
        async with app[HTTP_KEY].request(method, url, json=payload, params=params,
                                                 timeout=RASA_TIMEOUT) as response:
            if response.status >= 400:
                raise RasaUnavailable(f"{method} {path}: HTTP {response.status} {await response.text()}")
            return await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        raise RasaUnavailable(f"{method} {path}: {error}") from error


def _conversation_path(conversation_id: str) -> str:
    return "/conversations/" + quote(conversation_id, safe="")


async def _execute(app: web.Application, conversation_id: str, action: str) -> None:
    """Run one bot action now and let the bot listen again (/execute does not predict what follows)."""
    path = _conversation_path(conversation_id) + "/execute?output_channel=latest"
    await _rasa(app, "POST", path, {"name": action})
    await _rasa(app, "POST", path, {"name": "action_listen"})


async def _relay(app: web.Application, conversation_id: str, agent: str, text: str) -> None:
    settings = app[CONSOLE_KEY]
    url = settings.rasa_api_url + "/webhooks/socketio/agent_message"
    try:
        async with app[HTTP_KEY].post(
            url, json={"conversation_id": conversation_id, "agent": agent, "text": text},
            headers={"Authorization": f"Bearer {settings.relay_token}"}, timeout=RASA_TIMEOUT,
        ) as response:
            if response.status >= 400:
                raise RasaUnavailable(f"relay: HTTP {response.status} {await response.text()}")
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        raise RasaUnavailable(f"relay: {error}") from error


def transcript_of(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The messages of a tracker, oldest first, with who said each (shopper, bot, agent name)."""
    lines = []
    for event in events:
        kind = event.get("event")
        stamp = event.get("timestamp")
        if kind == "user":
            lines.append({"from": "shopper", "text": event.get("text") or "", "at": stamp})
        elif kind == "bot":
            agent = (event.get("metadata") or {}).get("agent")
            data = event.get("data") or {}
            text = event.get("text") or ""
            if not text and data.get("attachment"):
                text = "[product cards]"
            if data.get("buttons"):
                text += " [buttons: " + ", ".join(b.get("title", "") for b in data["buttons"]) + "]"
            lines.append({"from": agent or "bot", "agent": bool(agent), "text": text, "at": stamp})
        elif kind in ("pause", "resume"):
            lines.append({"from": "system", "text": "Bot paused" if kind == "pause" else "Bot resumed",
                          "at": stamp})
    return lines


# ----------------------------------------------------------------------------- database work


async def _db(request: web.Request, fn: Callable, *args) -> Any:
    engine = request.app[CONSOLE_ENGINE_KEY]
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, engine, *args))


def _summary(handoff: HandoffRequest) -> Dict[str, Any]:
    return {
        "id": handoff.id,
        "conversation_id": handoff.conversation_id,
        "reason": handoff.reason,
        "status": handoff.status,
        "agent": handoff.agent,
        "created_at": _iso(handoff.created_at),
        "claimed_at": _iso(handoff.claimed_at),
        "resolved_at": _iso(handoff.resolved_at),
        "rating": handoff.rating,
        "context": handoff.context or {},
    }


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.isoformat() + "Z" if moment else None


def _queue(engine: Engine) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return {
            "waiting": [_summary(h) for h in handoffs_by_status(session, ["waiting"])],
            "active": [_summary(h) for h in handoffs_by_status(session, ["active"])],
            "resolved": [_summary(h) for h in handoffs_by_status(session, ["resolved"], limit=30)],
            "tickets": [
                {"number": t.number, "conversation_id": t.conversation_id, "reason": t.reason,
                 "email": t.contact, "summary": t.summary, "created_at": _iso(t.created_at)}
                for t in open_tickets(session)
            ],
        }


def _handoff(engine: Engine, handoff_id: int) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return _summary(get_handoff(session, handoff_id))


def _shop_context(engine: Engine, conversation_id: str) -> Dict[str, Any]:
    """What the shop database knows about the shopper of this chat: proven email, cart."""
    with session_scope(engine) as session:
        facts: Dict[str, Any] = {}
        email = verified_email(session, conversation_id)
        if email:
            facts["verified email"] = email
        lines = cart_lines(session, find_open_cart(session, conversation_id))
        if lines:
            facts["cart"] = "; ".join(line.text for line in lines)
        return facts


def _claim(engine: Engine, handoff_id: int, agent: str) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return _summary(claim(session, handoff_id, agent))


def _release(engine: Engine, handoff_id: int, agent: str) -> None:
    with session_scope(engine) as session:
        release(session, handoff_id, agent)


def _owned(engine: Engine, handoff_id: int, agent: str) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return _summary(owned_active(session, handoff_id, agent))


def _resolve(engine: Engine, handoff_id: int, agent: str) -> Dict[str, Any]:
    with session_scope(engine) as session:
        return _summary(resolve(session, handoff_id, agent))


def _expire(engine: Engine, wait_seconds: int) -> List[str]:
    with session_scope(engine) as session:
        return [h.conversation_id for h in expire_unclaimed(session, wait_seconds)]


# ----------------------------------------------------------------------------- pages


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    body = request.app[CONSOLE_JINJA_KEY].get_template(template).render(shop_name=shop_settings().name, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.Response:
    if _agent(request):
        raise web.HTTPFound("/console")
    return _page(request, "console_login.html", error=None, name="")


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    settings = request.app[CONSOLE_KEY]
    valid = await asyncio.get_running_loop().run_in_executor(None, authenticate, settings.agents, name, password)
    if not valid:
        return _page(request, "console_login.html", status=401, name=name[:80],
                     error="That name and password don't match an agent account.")
    response = web.HTTPFound("/console")
    response.set_cookie(SESSION_COOKIE, session_cookie_for(settings, name), httponly=True, samesite="Strict",
                        max_age=SESSION_HOURS * 3600, path="/console")
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/console/login")
    response.del_cookie(SESSION_COOKIE, path="/console")
    raise response


async def console_page(request: web.Request) -> web.Response:
    agent = _agent(request)
    if agent is None:
        raise web.HTTPFound("/console/login")
    return _page(request, "console.html", agent=agent)


# ----------------------------------------------------------------------------- API


def _handoff_id(request: web.Request) -> int:
    return int(request.match_info["handoff_id"])  # the routes only match digits


def _refused(error: HandoffError) -> web.Response:
    status = 404 if error.code == "not_found" else 409 if error.code != "not_yours" else 403
    return web.json_response({"error": error.message}, status=status)


def _rasa_down(error: RasaUnavailable) -> web.Response:
    log.error("Rasa did not answer: %s", error)
    return web.json_response({"error": "The chat server did not answer; nothing was changed. Try again."},
                             status=502)


async def api_queue(request: web.Request) -> web.Response:
    _require_agent(request)
    return web.json_response(await _db(request, _queue))


async def api_conversation(request: web.Request) -> web.Response:
    _require_agent(request)
    try:
        handoff = await _db(request, _handoff, _handoff_id(request))
    except HandoffError as error:
        return _refused(error)
    handoff["shop"] = await _db(request, _shop_context, handoff["conversation_id"])
    try:
        tracker = await _rasa(request.app, "GET", _conversation_path(handoff["conversation_id"]) + "/tracker")
    except RasaUnavailable as error:
        log.error("cannot read the tracker: %s", error)
        return web.json_response({**handoff, "transcript": None, "slots": {}, "paused": None,
                                  "error": "The chat server did not answer; the transcript will reappear."})
    slots = {name: value for name, value in (tracker.get("slots") or {}).items()
             if value not in (None, [], {}, "") and name != "requested_slot"}
    return web.json_response({**handoff, "transcript": transcript_of(tracker.get("events") or []),
                              "slots": slots, "paused": tracker.get("paused")})


async def api_claim(request: web.Request) -> web.Response:
    agent = _require_agent(request)
    handoff_id = _handoff_id(request)
    try:
        handoff = await _db(request, _claim, handoff_id, agent)
    except HandoffError as error:
        return _refused(error)
    conversation_id = handoff["conversation_id"]
    try:
        await _rasa(request.app, "POST", _conversation_path(conversation_id) + "/tracker/events", [{"event": "pause"}])
    except RasaUnavailable as error:
        await _db(request, _release, handoff_id, agent)
        return _rasa_down(error)
    try:
        await _relay(request.app, conversation_id, agent,
                     f"Hi, I'm {agent} from the {shop_settings().name} team. I've read our chat so far; how can I help?")
    except RasaUnavailable as error:
        log.error("the greeting of %s did not reach the shopper: %s", agent, error)
    return web.json_response(handoff)


async def api_message(request: web.Request) -> web.Response:
    agent = _require_agent(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    text = str((body or {}).get("text", "") if isinstance(body, dict) else "").strip()
    if not text:
        return web.json_response({"error": "Type a message first."}, status=400)
    if len(text) > MESSAGE_MAX:
        return web.json_response({"error": f"Messages are limited to {MESSAGE_MAX} characters."}, status=400)
    try:
        handoff = await _db(request, _owned, _handoff_id(request), agent)
    except HandoffError as error:
        return _refused(error)
    try:
        await _relay(request.app, handoff["conversation_id"], agent, text)
    except RasaUnavailable as error:
        return _rasa_down(error)
    return web.json_response({"status": "sent"})


async def api_resolve(request: web.Request) -> web.Response:
    agent = _require_agent(request)
    handoff_id = _handoff_id(request)
    try:
        handoff = await _db(request, _owned, handoff_id, agent)
    except HandoffError as error:
        return _refused(error)
    conversation_id = handoff["conversation_id"]
    try:
        await _rasa(request.app, "POST", _conversation_path(conversation_id) + "/tracker/events", [{"event": "resume"}])
    except RasaUnavailable as error:
        return _rasa_down(error)
    handoff = await _db(request, _resolve, handoff_id, agent)
    try:
        await _execute(request.app, conversation_id, "action_handoff_resume")
    except RasaUnavailable as error:
        log.error("the bot could not greet the shopper back: %s", error)
    return web.json_response(handoff)


# ----------------------------------------------------------------------------- unclaimed chats


async def _sweep_unclaimed(app: web.Application) -> None:
    """Every second: chats nobody claimed in time get the bot's honest "nobody is free" and a ticket form."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            expired = await loop.run_in_executor(
                None, _expire, app[CONSOLE_ENGINE_KEY], app[CONSOLE_KEY].wait_seconds)
            for conversation_id in expired:
                await _execute(app, conversation_id, "action_handoff_no_agent")
        except RasaUnavailable as error:
            log.error("could not tell a waiting shopper that nobody is free: %s", error)
        except Exception:  # noqa: BLE001 - the sweeper must outlive one bad round
            log.exception("handoff sweeper round failed")


async def _background(app: web.Application):
    app[HTTP_KEY] = aiohttp.ClientSession()
    sweeper = asyncio.create_task(_sweep_unclaimed(app))
    yield
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)
    await app[HTTP_KEY].close()


def add_console_routes(app: web.Application, engine: Engine, settings: Optional[ConsoleSettings] = None) -> None:
    app[CONSOLE_KEY] = settings or console_settings()
    app[CONSOLE_ENGINE_KEY] = engine
    app[CONSOLE_JINJA_KEY] = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                                         autoescape=select_autoescape(default=True, default_for_string=True))
    app.cleanup_ctx.append(_background)
    app.router.add_get("/console/login", login_page, name="console_login")
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout, name="console_logout")
    app.router.add_get("/console", console_page, name="console")
    app.router.add_get("/console/api/queue", api_queue)
    app.router.add_get("/console/api/conversations/{handoff_id:\\d+}", api_conversation)
    app.router.add_post("/console/api/conversations/{handoff_id:\\d+}/claim", api_claim)
    app.router.add_post("/console/api/conversations/{handoff_id:\\d+}/messages", api_message)
    app.router.add_post("/console/api/conversations/{handoff_id:\\d+}/resolve", api_resolve)
