"""The shop's action server: rasa-sdk's own server with three guards, attached through rasa-sdk's
plugin hook (`attach_sanic_app_extensions`).

`python -m ops.action_server --actions actions --port 5055` (the same options as `rasa run actions`)

1. Shop database down, slow or hung: each connection and statement may take SHOP_DB_TIMEOUT_SECONDS
   (3 by default), and each action runs in a worker thread that gets ACTION_DEADLINE_SECONDS (4) in
   all, because a connection that hangs mid-query (network, a frozen server) has no client-side
   timeout in libpq. Either way, and for any SQLAlchemyError that leaves an action: a SQLAlchemyError that leaves any action becomes the honest
   "can't reach our shop system" reply with a *Talk to a person* button (HTTP 200), not a 500 with
   the traceback in its body, which Rasa 3.6 answers with silence (actions/shop_errors.py).
2. Only Rasa may call it: with ACTION_SERVER_TOKEN set, every request but GET /health must carry it
   in the X-Action-Token header (Rasa sends it from endpoints.production.yml); others get 401.
3. Logs are redacted (no emails, addresses or card-like numbers; channels/log_redaction.py).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional, Sequence

import pluggy
from rasa_sdk.__main__ import main_from_args
from rasa_sdk.endpoint import create_argument_parser
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException
from rasa_sdk.plugin import plugin_manager
from sanic import Sanic, response
from sanic.request import Request
from sqlalchemy.exc import SQLAlchemyError

from actions.shop_errors import shop_data_unavailable_reply
from channels import log_redaction

TOKEN_HEADER = "X-Action-Token"
DEFAULT_DB_TIMEOUT_SECONDS = "3"
ACTION_PACKAGE = "actions"
# Threads stuck on a hung database stay busy until it answers; further calls then wait for a free
# one and get the honest reply at their deadline too.
ACTION_THREADS = 16
logger = logging.getLogger("ops.action_server")
hookimpl = pluggy.HookimplMarker("rasa_sdk")


def action_server_token() -> str:
    return os.environ.get("ACTION_SERVER_TOKEN", "")


def action_deadline_seconds() -> float:
    return float(os.environ.get("ACTION_DEADLINE_SECONDS", "4"))


def _action_call(request: Request) -> Dict[str, Any]:
    try:
        body = request.json
    except Exception:  # a deflated or unreadable body: the reply needs no tracker
        body = None
    return body if isinstance(body, dict) else {}


async def _answer_for_unreachable_shop_data(request: Request, exception: SQLAlchemyError):
    action_call = _action_call(request)
    logger.error("Action %r could not reach the shop database: %s", action_call.get("next_action"),
                 type(exception).__name__, exc_info=exception)
    return response.json(shop_data_unavailable_reply(action_call))


def _unavailable(action_call: Dict[str, Any], why: str) -> response.HTTPResponse:
    logger.error("Action %r could not run: %s", action_call.get("next_action"), why)
    return response.json(shop_data_unavailable_reply(action_call))


def _run_with_deadline(deadline_seconds: float):
    """Handles POST /webhook in place of rasa-sdk's route (same answers), each action in a thread."""
    executor = ActionExecutor()
    executor.register_package(ACTION_PACKAGE)
    threads = ThreadPoolExecutor(max_workers=ACTION_THREADS, thread_name_prefix="action")

    def run_in_thread(action_call: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        return asyncio.run(executor.run(action_call))

    async def run(request: Request) -> Optional[response.HTTPResponse]:
        if request.method != "POST" or request.path != "/webhook" or request.headers.get("Content-Encoding"):
            return None  # compressed calls and other routes: rasa-sdk's own handling
        action_call = _action_call(request)
        if not action_call:
            return response.json({"error": "Invalid body request"}, status=400)
        work = asyncio.get_running_loop().run_in_executor(threads, run_in_thread, action_call)
        try:
            result = await asyncio.wait_for(work, deadline_seconds)
        except asyncio.TimeoutError:
            return _unavailable(action_call, f"no answer within {deadline_seconds} s (shop database hung?)")
        except SQLAlchemyError as exc:
            logger.error("Shop database error", exc_info=exc)
            return _unavailable(action_call, f"shop database error {type(exc).__name__}")
        except ActionExecutionRejection as exc:
            return response.json({"error": exc.message, "action_name": exc.action_name}, status=400)
        except ActionNotFoundException as exc:
            logger.error(exc)
            return response.json({"error": exc.message, "action_name": exc.action_name}, status=404)
        return response.json(result)

    return run


def _token_check(token: str):
    async def check(request: Request) -> Optional[response.HTTPResponse]:
        if request.path == "/health":
            return None
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
            return response.json({"error": f"missing or wrong {TOKEN_HEADER} header"}, status=401)
        return None

    return check


class ShopGuards:
    @hookimpl
    def attach_sanic_app_extensions(self, app: Sanic) -> None:
        app.error_handler.add(SQLAlchemyError, _answer_for_unreachable_shop_data)
        token = action_server_token()
        if token:
            app.register_middleware(_token_check(token), "request")
        else:
            logger.warning("ACTION_SERVER_TOKEN is not set: any process that reaches this port can run actions")
        # Registered after the token check, so it runs after it.
        app.register_middleware(_run_with_deadline(action_deadline_seconds()), "request")


def main(argv: Optional[Sequence[str]] = None) -> None:
    # A shopper is waiting on every action: a database that is down or hung must fail fast (shop.db).
    os.environ.setdefault("SHOP_DB_TIMEOUT_SECONDS", DEFAULT_DB_TIMEOUT_SECONDS)
    log_redaction.install()
    plugin_manager().register(ShopGuards())
    main_from_args(create_argument_parser().parse_args(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
