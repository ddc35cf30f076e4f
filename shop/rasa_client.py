"""The two calls the shop makes to the Rasa server's HTTP API (plain HTTP: no Rasa import in shop/).

* `trigger_intent` puts a message from the shop into a shopper's chat: Rasa runs the intent's rule in
  that conversation and answers on the channel the shopper used last (`output_channel=latest`), so
  the payment confirmation, cart reminders and stock alerts land in the same tracker as the chat.
* `latest_event_time` asks when a conversation last had an event (a shopper message and the bot's
  answer to it), so background jobs can tell whether the shopper is still around.

| variable      | default                          | what                                         |
| ------------- | -------------------------------- | -------------------------------------------- |
| RASA_URL      | http://127.0.0.1:$RASA_PORT      | the Rasa server's HTTP API                   |
| RASA_PORT     | 5005                             | used only when RASA_URL is not set           |
| RASA_TOKEN    | empty                            | sent as ?token= when Rasa runs --auth-token  |
| RASA_TIMEOUT_SECONDS | 10                        | how long one call may take                   |

A Rasa server that is down, slow or refusing never raises here: the functions log why and return
False / None, and the caller decides whether to try again later.
"""
from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any, Mapping, Optional
from urllib.parse import quote, urlencode

log = logging.getLogger(__name__)

__all__ = ["latest_event_time", "rasa_timeout", "rasa_token", "rasa_url", "trigger_intent"]


def rasa_url() -> str:
    """Where the Rasa server's HTTP API is: RASA_URL, else http://127.0.0.1:$RASA_PORT."""
    return (os.environ.get("RASA_URL") or f"http://127.0.0.1:{os.environ.get('RASA_PORT') or 5005}").rstrip("/")


def rasa_token() -> str:
    return os.environ.get("RASA_TOKEN", "")


def rasa_timeout() -> float:
    value = os.environ.get("RASA_TIMEOUT_SECONDS", "").strip()
    try:
        return float(value) if value else 10.0
    except ValueError:
        raise ValueError(f"RASA_TIMEOUT_SECONDS={value!r} is not a number") from None


def _conversation_url(conversation_id: str, path: str, query: Mapping[str, str], base_url: Optional[str],
                      token: Optional[str]) -> str:
    base = (base_url or rasa_url()).rstrip("/")
    token = token if token is not None else rasa_token()
    query = {**query, **({"token": token} if token else {})}
    # The conversation id is one path segment even when it holds "/" or spaces.
    return f"{base}/conversations/{quote(conversation_id, safe='')}/{path}?{urlencode(query)}"


def trigger_intent(conversation_id: str, intent: str, entities: Optional[Mapping[str, Any]] = None,
                   base_url: Optional[str] = None, token: Optional[str] = None) -> bool:
    """Trigger `intent` (with `entities`, name -> value) in the conversation; True when Rasa accepted it.

    Rasa answers 404 for an intent its model's domain does not have, 401/403 for a wrong token; those,
    a refused connection and a timeout all give False (logged), never an exception.
    """
    url = _conversation_url(conversation_id, "trigger_intent", {"output_channel": "latest"}, base_url, token)
    body = json.dumps({"name": intent, "entities": dict(entities or {})}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=rasa_timeout()) as response:
            response.read()
            return 200 <= response.status < 300
    except urllib.error.HTTPError as error:
        log.warning("Rasa refused intent %s for conversation %s: HTTP %s", intent, conversation_id, error.code)
    except (urllib.error.URLError, OSError) as error:
        log.warning("could not reach Rasa to trigger %s for conversation %s: %s", intent, conversation_id, error)
    return False


def latest_event_time(conversation_id: str, base_url: Optional[str] = None,
                      token: Optional[str] = None) -> Optional[datetime]:
    """When the conversation last had an event (naive UTC), from Rasa's tracker; None when Rasa can't say."""
    url = _conversation_url(conversation_id, "tracker", {"include_events": "NONE"}, base_url, token)
    try:
        with urllib.request.urlopen(url, timeout=rasa_timeout()) as response:
            state = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        log.warning("could not read conversation %s from Rasa: %s", conversation_id, error)
        return None
    stamp = state.get("latest_event_time") if isinstance(state, dict) else None
    if not isinstance(stamp, (int, float)):
        return None
    return datetime.utcfromtimestamp(stamp)
